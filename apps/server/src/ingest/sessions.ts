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
 * batch). Only while still OPEN.
 */
export async function recordActivity(
  ctx: IngestContext,
  sessionId: string,
  received: ReceivedCounts = NOTHING_RECEIVED,
): Promise<void> {
  const now = ctx.now();
  await ctx.catalog.backupSession.updateMany({
    where: { id: sessionId, status: "OPEN" },
    data: {
      lastActivityAt: now,
      expiresAt: expiryFrom(ctx, now),
      chunksReceived: { increment: received.chunks },
      bytesReceived: { increment: BigInt(received.bytes) },
      newBytes: { increment: BigInt(received.newBytes) },
      storedBytes: { increment: BigInt(received.storedBytes) },
    },
  });
}

/** The volume key (agent's Volume.id) of a session, for the ingest's name and labels. */
export async function ingestTargetOf(
  ctx: IngestContext,
  row: SessionRow,
): Promise<{ target: IngestTarget; repository: OpenRepository }> {
  const repository = await ctx.repositories.get(row.repositoryId);
  const volume = await ctx.catalog.volume.findUniqueOrThrow({ where: { id: row.volumeId } });
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
