import { createHash } from "node:crypto";
import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { Logger } from "pino";
import type { AgentIdentity } from "../grpc/identity.js";
import type { OpenRepository, RepositoryRegistry } from "../repositories/registry.js";
import type { IngestTarget, RepositoryIngests } from "./repository-ingests.js";

// Shared by the BackupService calls: what they depend on, and how a call finds "its" session.
// A session of another agent is indistinguishable from an unknown one (docs/protocol.md §3).

export interface IngestContext {
  catalog: Catalog;
  repositories: RepositoryRegistry;
  ingests: RepositoryIngests;
  /** A session with no call for this long expires. */
  idleTimeoutSeconds: number;
  now: () => Date;
  log: Logger;
}

export type SessionRow = NonNullable<Awaited<ReturnType<Catalog["backupSession"]["findUnique"]>>>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** Resume tokens are stored as SHA-256 only: a catalog leak does not let anyone resume a session. */
export function hashResumeToken(token: Uint8Array): string {
  return createHash("sha256").update(token).digest("hex");
}

function notFound(sessionId: string): BulwarkError {
  return new BulwarkError(
    "BULWARK_PROTO_SESSION_NOT_FOUND",
    `backup session ${sessionId} is unknown or expired`,
    {
      details: { sessionId },
    },
  );
}

/** The caller's session in any state; NOT_FOUND for unknown and foreign ones alike. */
export async function ownSession(
  ctx: IngestContext,
  agent: AgentIdentity,
  sessionId: string,
): Promise<SessionRow> {
  if (!isUuid(sessionId)) {
    if (sessionId === "") throw new BulwarkError("BULWARK_PROTO_MALFORMED", "session_id is required");
    throw notFound(sessionId);
  }
  const row = await ctx.catalog.backupSession.findUnique({ where: { id: sessionId } });
  if (!row || row.agentId !== agent.agentId) throw notFound(sessionId);
  return row;
}

/** Throws unless the session accepts work now: OPEN and not past its expiry. */
export function requireOpen(ctx: IngestContext, row: SessionRow): void {
  if (row.status === "COMMITTED" || row.status === "ABORTED") {
    throw new BulwarkError(
      "BULWARK_PROTO_SESSION_CLOSED",
      `backup session ${row.id} is ${row.status.toLowerCase()}`,
      {
        details: { sessionId: row.id, status: row.status },
      },
    );
  }
  if (row.status === "EXPIRED" || row.expiresAt <= ctx.now()) throw notFound(row.id);
}

/**
 * The caller's open session, with its activity recorded: one UPDATE … RETURNING in the common
 * case (QueryMissing runs once per 4 MiB of volume, and every catalog round trip costs the
 * server's main thread ~2 ms of Prisma). A session that does not qualify is looked up again to
 * answer with the precise error.
 */
export async function touchOpenSession(
  ctx: IngestContext,
  agent: AgentIdentity,
  sessionId: string,
): Promise<SessionRow> {
  if (isUuid(sessionId)) {
    const now = ctx.now();
    const [row] = await ctx.catalog.backupSession.updateManyAndReturn({
      where: { id: sessionId, agentId: agent.agentId, status: "OPEN", expiresAt: { gt: now } },
      data: { lastActivityAt: now, expiresAt: expiryFrom(ctx, now) },
    });
    if (row) return row;
  }
  const row = await openSession(ctx, agent, sessionId);
  await recordActivity(ctx, row.id); // it became open meanwhile (a concurrent call pushed its expiry)
  return row;
}

/** The caller's session, open. */
export async function openSession(
  ctx: IngestContext,
  agent: AgentIdentity,
  sessionId: string,
): Promise<SessionRow> {
  const row = await ownSession(ctx, agent, sessionId);
  requireOpen(ctx, row);
  return row;
}

export function expiryFrom(ctx: IngestContext, now: Date): Date {
  return new Date(now.getTime() + ctx.idleTimeoutSeconds * 1000);
}

/** What one acked batch adds to its session's counters. */
export interface ReceivedCounts {
  chunks: number;
  /** Payload bytes as received (compressed or raw). */
  bytes: number;
  /** Plaintext bytes of the chunks the batch wrote. */
  newBytes: number;
  /** Stored bytes of the chunk files the batch wrote. */
  storedBytes: number;
}

const NOTHING_RECEIVED: ReceivedCounts = { chunks: 0, bytes: 0, newBytes: 0, storedBytes: 0 };

/**
 * Activity: pushes the expiry out and adds to the session's counters, in one UPDATE (atomic per
 * batch). Only while still OPEN (and, with `unexpired`, not past its expiry); false if the session
 * no longer qualifies, so nothing was counted.
 */
export async function recordActivity(
  ctx: IngestContext,
  sessionId: string,
  received: ReceivedCounts = NOTHING_RECEIVED,
  unexpired = false,
): Promise<boolean> {
  const now = ctx.now();
  const done = await ctx.catalog.backupSession.updateMany({
    where: { id: sessionId, status: "OPEN", ...(unexpired ? { expiresAt: { gt: now } } : {}) },
    data: {
      lastActivityAt: now,
      expiresAt: expiryFrom(ctx, now),
      chunksReceived: { increment: received.chunks },
      bytesReceived: { increment: BigInt(received.bytes) },
      newBytes: { increment: BigInt(received.newBytes) },
      storedBytes: { increment: BigInt(received.storedBytes) },
    },
  });
  return done.count > 0;
}

/**
 * Volume keys by volume ID, per catalog (immutable: the agent's name for the volume, by which
 * inventory and BeginSession upsert it), so that the calls made per 4 MiB of a backup do not look
 * the volume up each time. Bounded; a miss costs one query.
 */
const volumeKeysOf = new WeakMap<Catalog, Map<string, string>>();
const VOLUME_KEYS_CACHED = 1024;

async function volumeKey(ctx: IngestContext, volumeId: string): Promise<string> {
  let volumeKeys = volumeKeysOf.get(ctx.catalog);
  if (!volumeKeys) {
    volumeKeys = new Map();
    volumeKeysOf.set(ctx.catalog, volumeKeys);
  }
  const cached = volumeKeys.get(volumeId);
  if (cached !== undefined) return cached;
  const { key } = await ctx.catalog.volume.findUniqueOrThrow({
    where: { id: volumeId },
    select: { key: true },
  });
  if (volumeKeys.size >= VOLUME_KEYS_CACHED) volumeKeys.delete(volumeKeys.keys().next().value as string);
  volumeKeys.set(volumeId, key);
  return key;
}

/** The volume key (agent's Volume.id) of a session, for the ingest's name and labels. */
export async function ingestTargetOf(
  ctx: IngestContext,
  row: SessionRow,
): Promise<{ target: IngestTarget; repository: OpenRepository }> {
  const repository = await ctx.repositories.get(row.repositoryId);
  const volume = { key: await volumeKey(ctx, row.volumeId) };
  return {
    repository,
    target: {
      sessionId: row.id,
      repo: repository.repo,
      name: `${row.agentId}/${volume.key}`,
      volumeSize: Number(row.volumeSize),
      chunkSize: row.chunkSize,
      labels: {
        session: row.id,
        agent: row.agentId,
        volume: volume.key,
        ...(row.jobId ? { job: row.jobId } : {}),
      },
    },
  };
}

/** The repository of an open session, with its ingest (a GC root) opened on this node if needed. */
export async function sessionRepository(ctx: IngestContext, row: SessionRow): Promise<OpenRepository> {
  const { target, repository } = await ingestTargetOf(ctx, row);
  await ctx.ingests.ensure(target);
  return repository;
}
