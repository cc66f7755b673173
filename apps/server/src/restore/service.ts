import { BulwarkError } from "@bulwark/errors";
import {
  type CallWithAuthContext,
  failStream,
  negotiateProtocol,
  type RestoreComplete,
  type RestoreRequest,
  type RestoreResponse,
  type RestoreServiceServer,
  type RestoreStats,
} from "@bulwark/protocol";
import type { Metadata, ServerDuplexStream } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { writeAudit } from "../audit/write.js";
import { messages } from "../grpc/call-messages.js";
import type { AgentIdentity, AgentIdentityResolver } from "../grpc/identity.js";
import { finishJob } from "../jobs/mirror.js";
import { type OpenedRestore, openRestore, type RestoreServiceContext } from "./open.js";
import { type ChunkLoader, emptyTotals, prepareRange, sendRange } from "./ranges.js";
import { restoreReadPool } from "./read-pool.js";

// RestoreService.Restore on the agent listener (docs/protocol.md §3): Start → Header, then each
// Want answered in order with Zeros / Chunks / RangeDone (reads of later Wants under way while
// earlier ones are sent), then (after the agent's Complete and half-close, which it sends once
// everything is written, synced and checked) Finished and OK. The catalog job follows along:
// RUNNING at Start, bytesDone as ranges complete, SUCCEEDED when the whole point has been covered
// and the agent confirmed it. A half-close alone proves nothing: grpc-js ends the request stream
// of a call the agent cancels (its restore failed) before it reports the cancel. Every stream
// that names a job leaves one audit row, `restore.volume.stream`.
// A new stream of a job supersedes the one still open for it: an agent runs one stream per job, so
// the old one lost its connection even if its socket never told us (docs/protocol.md §3).

/** Oldest protocol minor this service accepts. */
const MIN_SUPPORTED_MINOR = 0;
/** From this minor on the agent confirms a restore with Complete (older agents only half-close). */
const COMPLETE_MINOR = 2;
/** Job progress is written at most this often: a row update per range would load the catalog. */
const PROGRESS_WRITE_INTERVAL_MS = 1_000;
/** How often a running stream re-checks the agent's certificate (revocation). */
const IDENTITY_RECHECK_MS = 1_000;
export const RESTORE_AUDIT_ACTION = "restore.volume.stream";

export interface RestoreServiceDeps extends RestoreServiceContext {
  log: Logger;
  /** How stored chunks are read and opened; default: the process's read pool (worker threads). */
  loadChunks?: ChunkLoader;
}

/** Responses are messages or bytes already encoded (Chunks, by the read workers; see
 * encodeRestoreResponse, the serializer RestoreServiceFastResponses registers). */
type RestoreCall = ServerDuplexStream<RestoreRequest, RestoreResponse | Buffer>;

/** The stream open for a job on this server: how to end it and when it has finished ending. */
interface LiveStream {
  supersede(): void;
  ended: Promise<void>;
}
const liveStreams = new Map<string, LiveStream>();

export function restoreService(
  ctx: RestoreServiceDeps,
  identity: AgentIdentityResolver,
): RestoreServiceServer {
  return { restore: (call) => void restoreCall(ctx, identity, call as RestoreCall) };
}

/** Where a stream got to, for the audit row and the job. */
interface StreamState {
  opened?: OpenedRestore;
  resumeFrom: number;
  next: number;
  totals: ReturnType<typeof emptyTotals>;
  startedAt: number;
  /** The agent's Complete, once it came. */
  complete?: RestoreComplete;
}

async function restoreCall(ctx: RestoreServiceDeps, identity: AgentIdentityResolver, call: RestoreCall) {
  let gone = false;
  let stopped = false;
  call.on("cancelled", () => {
    gone = true;
  });
  // A failed send (or a newer stream of the job) ends the wait for the next Want, for room or for
  // the last sends. One waiter at a time, not a race against a long-lived promise (each race
  // would stay attached to it until the stream ends).
  let sendFailure: { error: unknown } | undefined;
  let interrupt: ((err: unknown) => void) | undefined;
  const failSending = (error: unknown) => {
    sendFailure ??= { error };
    interrupt?.(error);
  };
  const unlessSendFailed = <T>(p: Promise<T>): Promise<T> => {
    if (sendFailure) return Promise.reject(sendFailure.error);
    return new Promise<T>((resolve, reject) => {
      interrupt = reject;
      // Only its own waiter: this runs after the caller has already set up the next wait (the
      // room wait follows a Want synchronously), which a plain reset left uninterruptible, so a
      // stream cut while it waited for room hung forever, unaudited.
      p.then(resolve, reject).finally(() => {
        if (interrupt === reject) interrupt = undefined;
      });
    });
  };
  // Set once this stream is registered for its job; the finally below unregisters it.
  let live: (LiveStream & { end(): void; jobId: string }) | undefined;
  let agent: AgentIdentity | undefined;
  const state: StreamState = {
    resumeFrom: 0,
    next: 0,
    totals: emptyTotals(),
    startedAt: ctx.now().getTime(),
  };
  try {
    const minor = negotiateProtocol(
      (call as unknown as { metadata: Metadata }).metadata,
      MIN_SUPPORTED_MINOR,
    );
    agent = await identity.resolve(call as unknown as CallWithAuthContext);
    const known = agent;
    const input = messages<RestoreRequest>(call);
    const first = await input.next();
    if (first.done) return; // cancelled before Start: nothing happened
    if (first.value.message?.$case !== "start") {
      throw new BulwarkError("BULWARK_PROTO_MALFORMED", "the first message of a restore must be start");
    }
    const start = first.value.message.value;
    const opened = await openRestore(ctx, known, start);
    state.opened = opened;
    state.resumeFrom = start.resumeFromIndex;
    state.next = start.resumeFromIndex;
    // A refused stream stops sending at once, even from ranges that are still being sent.
    const send = (m: RestoreResponse | Buffer, taken?: () => void) =>
      write(call, m, () => gone || stopped, taken);
    // A cut TCP connection does not always reach us: a session whose HTTP/2 send is blocked by
    // flow control can miss the peer's FIN until a keepalive PING fails (minutes). The agent's
    // reconnect proves it: end the old stream (its FAILURE row, its last progress) before this
    // one writes anything.
    let ended: () => void = () => {};
    const mine = {
      jobId: opened.jobId,
      supersede: () =>
        failSending(
          new BulwarkError(
            "BULWARK_PROTO_TRANSPORT_FAILED",
            "the restore stream was cut: the agent opened a new stream for the job",
          ),
        ),
      ended: new Promise<void>((resolve) => {
        ended = resolve;
      }),
      end: () => ended(),
    };
    const prior = liveStreams.get(opened.jobId);
    liveStreams.set(opened.jobId, mine);
    live = mine;
    if (prior) {
      prior.supersede();
      await prior.ended;
    }
    await markRunning(ctx, opened);
    await send({ message: { $case: "header", value: opened.header } });

    const total = opened.header.totalChunks;
    const window = opened.header.windowChunks;
    const delta = opened.params.mode === "DELTA";
    const load: ChunkLoader = ctx.loadChunks ?? ((repo, ids) => restoreReadPool().read(repo, ids));
    let lastProgress = ctx.now().getTime();
    let lastIdentityCheck = lastProgress;
    // Wants are planned and their reads started as they arrive; a chain sends them in order. The
    // chunks planned but not yet sent are bounded by the window (an agent that asks beyond it
    // waits here), so a stream holds at most window chunks of payload.
    let expected = start.resumeFromIndex;
    let unsent = 0;
    let room: (() => void) | undefined;
    let sending: Promise<void> = Promise.resolve();
    while (true) {
      const next = await unlessSendFailed(input.next());
      if (next.done || gone) break;
      const req = next.value;
      // Revocation ends the stream: the certificate is looked up again at most once a second (a
      // catalog query per Want cost more CPU than serving the Want).
      const checkedAt = ctx.now().getTime();
      if (checkedAt - lastIdentityCheck >= IDENTITY_RECHECK_MS) {
        await identity.resolve(call as unknown as CallWithAuthContext);
        lastIdentityCheck = checkedAt;
      }
      if (state.complete) {
        throw new BulwarkError("BULWARK_PROTO_MALFORMED", "nothing may follow a restore's complete");
      }
      if (req.message?.$case === "complete") {
        state.complete = req.message.value;
        continue;
      }
      if (req.message?.$case !== "want") {
        throw new BulwarkError(
          "BULWARK_PROTO_MALFORMED",
          "after start, a restore takes only want messages and complete",
        );
      }
      const want = req.message.value;
      checkWant(want.startIndex, want.count, expected, total, window);
      expected = want.startIndex + want.count;
      while (unsent > 0 && unsent + want.count > window) {
        await unlessSendFailed(
          new Promise<void>((resolve) => {
            room = resolve;
          }),
        );
      }
      unsent += want.count;
      const prepared = prepareRange(opened.repo, opened.tree, want, delta, load);
      prepared.catch(() => {}); // raised by the chain, in order
      sending = sending.then(async () => {
        const t = await sendRange(await prepared, send);
        state.totals.chunksSent += t.chunksSent;
        state.totals.chunksUnchanged += t.chunksUnchanged;
        state.totals.chunksZero += t.chunksZero;
        state.totals.bytesSent += t.bytesSent;
        state.next = want.startIndex + want.count;
        unsent -= want.count;
        room?.();
        room = undefined;
        const now = ctx.now().getTime();
        if (now - lastProgress >= PROGRESS_WRITE_INTERVAL_MS) {
          lastProgress = now;
          await writeProgress(ctx, opened, state.next);
        }
      });
      sending.catch(failSending);
    }
    if (gone) throw new BulwarkError("BULWARK_PROTO_TRANSPORT_FAILED", "the restore stream was cut");
    await unlessSendFailed(sending);
    if (state.next < total) {
      throw new BulwarkError(
        "BULWARK_RESTORE_INCOMPLETE",
        `the agent ended the restore after chunk ${state.next} of ${total}`,
        { details: { nextIndex: state.next, totalChunks: total } },
      );
    }
    if (!state.complete && minor >= COMPLETE_MINOR) {
      // Every chunk was served, but the agent did not say the target is complete: its restore
      // failed after the last range (a check, a sync) or it was cut; its JobResult decides.
      throw new BulwarkError(
        "BULWARK_RESTORE_INCOMPLETE",
        "the agent ended the restore without confirming the target complete",
        { details: { nextIndex: state.next, totalChunks: total, confirmed: false } },
      );
    }
    const stats = statsOf(opened, state, ctx.now().getTime());
    await send({ message: { $case: "finished", value: { stats } } });
    await markSucceeded(ctx, opened, stats, state.complete?.indexVerified);
    await audit(ctx, known, state, "SUCCESS");
    call.end();
  } catch (err) {
    stopped = true;
    if (agent)
      await audit(ctx, agent, state, outcomeOf(err, state), err).catch((e) => logAuditFailure(ctx, e));
    if (state.opened) await writeProgress(ctx, state.opened, state.next).catch(() => {});
    if (gone) return;
    if (err instanceof BulwarkError)
      ctx.log.info({ code: err.code, msg: err.message }, "restore stream refused");
    else ctx.log.error({ err }, "restore stream failed");
    failStream(call, err);
  } finally {
    if (live) {
      if (liveStreams.get(live.jobId) === live) liveStreams.delete(live.jobId);
      live.end();
    }
  }
}

/** Wants come in order, contiguous from resume_from_index, each within the window and the volume. */
function checkWant(start: number, count: number, next: number, total: number, window: number): void {
  const details = { startIndex: start, count, expectedStart: next, totalChunks: total, windowChunks: window };
  if (count < 1)
    throw new BulwarkError("BULWARK_RESTORE_BAD_RANGE", "a want must ask for at least one chunk", {
      details,
    });
  if (count > window) {
    throw new BulwarkError("BULWARK_RESTORE_BAD_RANGE", `a want may ask for at most ${window} chunks`, {
      details,
    });
  }
  if (start !== next) {
    throw new BulwarkError("BULWARK_RESTORE_BAD_RANGE", `wants must be contiguous: expected chunk ${next}`, {
      details,
    });
  }
  if (start + count > total) {
    throw new BulwarkError("BULWARK_RESTORE_BAD_RANGE", `the volume has ${total} chunks`, { details });
  }
}

function statsOf(opened: OpenedRestore, state: StreamState, now: number): RestoreStats {
  return {
    volumeBytes: opened.point.volumeSize,
    bytesReceived: state.totals.bytesSent,
    chunksReceived: state.totals.chunksSent,
    chunksUnchanged: state.totals.chunksUnchanged,
    chunksZero: state.totals.chunksZero,
    durationMs: Math.max(0, now - state.startedAt),
  };
}

function outcomeOf(err: unknown, state: StreamState): "FAILURE" | "DENIED" {
  if (!state.opened && err instanceof BulwarkError && err.code !== "BULWARK_PROTO_TRANSPORT_FAILED")
    return "DENIED";
  return "FAILURE";
}

async function audit(
  ctx: RestoreServiceDeps,
  agent: AgentIdentity,
  state: StreamState,
  outcome: "SUCCESS" | "FAILURE" | "DENIED",
  err?: unknown,
): Promise<void> {
  const opened = state.opened;
  const code = err instanceof BulwarkError ? err.code : err ? "BULWARK_GENERAL_INTERNAL" : undefined;
  await writeAudit(ctx.catalog, {
    tenantId: agent.tenantId,
    actorType: "AGENT",
    actorId: agent.agentId,
    action: RESTORE_AUDIT_ACTION,
    targetType: opened ? "job" : null,
    targetId: opened?.jobId ?? null,
    outcome,
    at: ctx.now(),
    details: {
      ...(opened
        ? {
            restorePointId: opened.backupId,
            // The REST API's and the rest of the audit log's words ("full" / "delta").
            mode: opened.params.mode.toLowerCase(),
            resumeFromIndex: state.resumeFrom,
            nextIndex: state.next,
            totalChunks: opened.header.totalChunks,
            chunksSent: state.totals.chunksSent,
            chunksUnchanged: state.totals.chunksUnchanged,
            bytesSent: state.totals.bytesSent,
            ...(state.complete ? { indexVerified: state.complete.indexVerified } : {}),
          }
        : {}),
      ...(code ? { errorCode: code } : {}),
      certificateSerial: agent.certificateSerial,
    },
  });
}

function logAuditFailure(ctx: RestoreServiceDeps, err: unknown): void {
  ctx.log.error({ err }, "could not write the restore audit row");
}

async function markRunning(ctx: RestoreServiceDeps, opened: OpenedRestore): Promise<void> {
  const now = ctx.now();
  await ctx.catalog.job.updateMany({
    where: { id: opened.jobId, state: { in: ["QUEUED", "RUNNING"] } },
    data: { state: "RUNNING", bytesTotal: BigInt(opened.point.volumeSize) },
  });
  await ctx.catalog.job.updateMany({
    where: { id: opened.jobId, startedAt: null },
    data: { startedAt: now },
  });
}

/** bytesDone = the volume bytes up to the first chunk not yet served (what a resume skips). */
async function writeProgress(ctx: RestoreServiceDeps, opened: OpenedRestore, next: number): Promise<void> {
  const size = opened.point.volumeSize;
  const done = Math.min(size, next * opened.point.chunkSize);
  await ctx.catalog.job.updateMany({
    where: { id: opened.jobId, state: "RUNNING" },
    data: { bytesDone: BigInt(done), progress: size === 0 ? 1 : done / size },
  });
}

async function markSucceeded(
  ctx: RestoreServiceDeps,
  opened: OpenedRestore,
  stats: RestoreStats,
  indexVerified: boolean | undefined,
): Promise<void> {
  // Through finishJob, which writes the job log's "finished" line: the worker's own finishJob
  // then finds the row final and writes nothing, so a plain update left restores without one.
  await finishJob(
    ctx.catalog,
    opened.jobId,
    "SUCCEEDED",
    {
      progress: 1,
      bytesDone: BigInt(opened.point.volumeSize),
      finishedAt: ctx.now(),
      // indexVerified: the agent checked the whole volume against the index digest (absent: an
      // agent before minor 2 did not say).
      result: { restore: { ...stats }, ...(indexVerified === undefined ? {} : { indexVerified }) },
    },
    { log: ctx.log },
  );
}

/**
 * Writes one message, waiting for 'drain' when grpc-js / HTTP/2 flow control says the agent is
 * behind. `taken` runs after grpc-js has serialized and written it (its write callback without an
 * error): from then on nothing reads the message's bytes.
 */
async function write(
  call: RestoreCall,
  message: RestoreResponse | Buffer,
  gone: () => boolean,
  taken?: () => void,
): Promise<void> {
  if (gone()) throw new BulwarkError("BULWARK_PROTO_TRANSPORT_FAILED", "the restore stream was cut");
  const written = taken
    ? (err: Error | null | undefined) => {
        if (!err) taken();
      }
    : undefined;
  if (!call.write(message, written)) {
    // Both listeners go away again: events.once would leave a "cancelled" listener per wait.
    await new Promise<void>((resolve) => {
      const done = () => {
        call.off("drain", done);
        call.off("cancelled", done);
        resolve();
      };
      call.on("drain", done);
      call.on("cancelled", done);
    });
  }
  if (gone()) throw new BulwarkError("BULWARK_PROTO_TRANSPORT_FAILED", "the restore stream was cut");
}
