import type { IngestContext } from "./sessions.js";

// Session expiry: an OPEN session with no call until its expiresAt becomes EXPIRED, and its
// repository ingest on this node ends (its chunks stay for reuse; no restore point). Every node
// sweeps; the UPDATE is atomic, so two nodes never both act on one session, and each node also
// drops ingests it holds for sessions another node (or an abort) has ended.

export async function sweepExpiredSessions(ctx: IngestContext): Promise<string[]> {
  const now = ctx.now();
  const expired = await ctx.catalog.$queryRaw<{ id: string }[]>`
    UPDATE backup_sessions SET status = 'EXPIRED', "endedAt" = ${now}
    WHERE status = 'OPEN' AND "expiresAt" <= ${now}
    RETURNING id::text AS id`;
  const held = ctx.ingests.ids();
  if (held.length > 0) {
    const stillOpen = await ctx.catalog.backupSession.findMany({
      where: { id: { in: held }, status: "OPEN", expiresAt: { gt: now } },
      select: { id: true },
    });
    const open = new Set(stillOpen.map((s) => s.id));
    for (const id of held) if (!open.has(id)) await ctx.ingests.abort(id);
  }
  if (expired.length > 0) ctx.log.info({ sessions: expired.map((e) => e.id) }, "backup sessions expired");
  return expired.map((e) => e.id);
}

/** Runs the sweep every `intervalMs` until stopped; a failed sweep is logged and retried next time. */
export function startExpirySweeper(ctx: IngestContext, intervalMs: number): { stop(): Promise<void> } {
  let running: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(() =>
      sweepExpiredSessions(ctx).catch((err: unknown) => ctx.log.warn({ err }, "session expiry sweep failed")),
    );
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
