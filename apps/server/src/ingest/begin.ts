import { randomBytes } from "node:crypto";
import type { VolumeKind } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import {
  type BeginSessionRequest,
  type BeginSessionResponse,
  ChunkIdAlgorithm,
  isValidChunkSize,
  MAX_INDEX_PART_IDS,
  MAX_QUERY_IDS,
  MAX_UPLOAD_BATCH_BYTES,
  MAX_VOLUME_BYTES,
} from "@bulwark/protocol";
import type { AgentIdentity } from "../grpc/identity.js";
import {
  expiryFrom,
  hashResumeToken,
  type IngestContext,
  ingestTargetOf,
  isUuid,
  type SessionRow,
} from "./sessions.js";

// BeginSession: checks the job, the geometry and the previous restore point, then opens a new
// session or resumes the caller's open one by its resume token (docs/protocol.md §3, §7, §8).

/** Resume tokens: 256 random bits, handed out once, stored hashed. */
const RESUME_TOKEN_BYTES = 32;
/** Longest volume key accepted (a by-id path or UUID is far shorter); bounds the ingest's name. */
const MAX_VOLUME_KEY_LENGTH = 200;
/** Logical sector sizes a device reports; 0 = not known (e.g. an image file). */
const SECTOR_SIZES = new Set([0, 512, 4096]);
/** Job states in which an agent may still upload for a job. */
const ACTIVE_JOB_STATES = ["QUEUED", "RUNNING"] as const;

function malformed(message: string): BulwarkError {
  return new BulwarkError("BULWARK_PROTO_MALFORMED", message);
}

interface Checked {
  jobId: string;
  volumeKey: string;
  size: number;
  chunkSize: number;
}

function checkRequest(req: BeginSessionRequest): Checked {
  if (!req.jobId) throw malformed("job_id is required");
  if (!req.volumeId || req.volumeId.length > MAX_VOLUME_KEY_LENGTH) {
    throw malformed(`volume_id must have 1 to ${MAX_VOLUME_KEY_LENGTH} characters`);
  }
  const g = req.geometry;
  if (!g) throw malformed("geometry is required");
  if (!Number.isSafeInteger(g.sizeBytes) || g.sizeBytes < 1 || g.sizeBytes > MAX_VOLUME_BYTES) {
    throw new BulwarkError(
      "BULWARK_PROTO_GEOMETRY_INVALID",
      `volume size ${g.sizeBytes} is not from 1 to 2^53 bytes`,
      {
        details: { sizeBytes: g.sizeBytes },
      },
    );
  }
  if (!isValidChunkSize(g.chunkSize)) {
    throw new BulwarkError(
      "BULWARK_PROTO_GEOMETRY_INVALID",
      `chunk size ${g.chunkSize} is not a power of two from 4 KiB to 4 MiB`,
      {
        details: { chunkSize: g.chunkSize },
      },
    );
  }
  if (!SECTOR_SIZES.has(g.logicalSectorSize)) {
    throw new BulwarkError(
      "BULWARK_PROTO_GEOMETRY_INVALID",
      `logical sector size ${g.logicalSectorSize} is not 512 or 4096`,
      {
        details: { logicalSectorSize: g.logicalSectorSize },
      },
    );
  }
  if (req.previousIndexDigest.length !== 0 && req.previousIndexDigest.length !== 32) {
    throw malformed("previous_index_digest must be empty or 32 bytes");
  }
  if (req.resumeToken.length !== 0 && req.resumeToken.length !== RESUME_TOKEN_BYTES) {
    throw malformed(`resume_token must be empty or ${RESUME_TOKEN_BYTES} bytes`);
  }
  return { jobId: req.jobId, volumeKey: req.volumeId, size: g.sizeBytes, chunkSize: g.chunkSize };
}

/** The job must be a live backup job issued to this agent; its policy names the repository. */
async function assignedJob(ctx: IngestContext, agent: AgentIdentity, jobId: string) {
  const job = isUuid(jobId)
    ? await ctx.catalog.job.findUnique({
        where: { id: jobId },
        include: { policy: { select: { repositoryId: true } } },
      })
    : null;
  if (
    !job ||
    job.agentId !== agent.agentId ||
    job.tenantId !== agent.tenantId ||
    job.kind !== "BACKUP" ||
    !(ACTIVE_JOB_STATES as readonly string[]).includes(job.state)
  ) {
    throw new BulwarkError(
      "BULWARK_PROTO_JOB_NOT_ASSIGNED",
      `job ${jobId} is not a running backup job of this agent`,
      {
        details: { jobId },
      },
    );
  }
  // A cancelled job takes no uploads (docs/jobs.md, "Cancel"), whatever the agent has heard yet.
  if (job.cancelRequestedAt) {
    throw new BulwarkError("BULWARK_CONTROL_JOB_CANCELLED", `job ${jobId} was cancelled`, {
      details: { jobId },
    });
  }
  // One restore point per job (Backup.jobId is unique): a job that has one is done.
  const done = await ctx.catalog.backup.findUnique({ where: { jobId }, select: { id: true } });
  if (done) {
    throw new BulwarkError(
      "BULWARK_PROTO_JOB_NOT_ASSIGNED",
      `job ${jobId} already produced restore point ${done.id}`,
      {
        details: { jobId, restorePointId: done.id },
      },
    );
  }
  return job;
}

/** The job's policy's repository, else the tenant's only repository. */
async function repositoryIdFor(
  ctx: IngestContext,
  agent: AgentIdentity,
  policyRepositoryId: string | undefined,
) {
  if (policyRepositoryId) return policyRepositoryId;
  const rows = await ctx.catalog.repository.findMany({
    where: { tenantId: agent.tenantId },
    select: { id: true },
    take: 2,
  });
  if (rows.length !== 1) {
    throw new BulwarkError(
      "BULWARK_INGEST_NO_REPOSITORY",
      rows.length === 0
        ? "the tenant has no repository; create one with `bulwark-server repo init`"
        : "the job has no policy and the tenant has several repositories; cannot choose one",
    );
  }
  return rows[0]!.id;
}

/** Until the inventory reports it, a volume's kind is guessed from the agent's key ("disk:…" = whole disk). */
function kindOfKey(key: string): VolumeKind {
  return key.startsWith("disk:") ? "DISK" : "PARTITION";
}

async function previousIndexValid(
  ctx: IngestContext,
  agent: AgentIdentity,
  req: BeginSessionRequest,
  c: Checked,
): Promise<{ previousId: string | null; valid: boolean }> {
  if (!req.previousRestorePointId) return { previousId: null, valid: false };
  const backup = isUuid(req.previousRestorePointId)
    ? await ctx.catalog.backup.findUnique({
        where: { id: req.previousRestorePointId },
        include: { volume: { select: { key: true } } },
      })
    : null;
  if (
    !backup ||
    backup.agentId !== agent.agentId ||
    backup.volume.key !== c.volumeKey ||
    backup.status !== "AVAILABLE"
  ) {
    throw new BulwarkError(
      "BULWARK_PROTO_RESTORE_POINT_NOT_FOUND",
      `restore point ${req.previousRestorePointId} is not a restore point of this volume`,
      { details: { restorePointId: req.previousRestorePointId } },
    );
  }
  // The agent's cache is only usable for the same geometry and the exact committed index.
  const valid =
    backup.indexDigest !== null &&
    req.previousIndexDigest.length === 32 &&
    Buffer.from(backup.indexDigest).equals(Buffer.from(req.previousIndexDigest)) &&
    Number(backup.volumeSize) === c.size &&
    backup.chunkSize === c.chunkSize;
  return { previousId: backup.id, valid };
}

export async function beginSession(
  ctx: IngestContext,
  agent: AgentIdentity,
  req: BeginSessionRequest,
): Promise<BeginSessionResponse> {
  const c = checkRequest(req);
  const job = await assignedJob(ctx, agent, c.jobId);
  const repositoryId = await repositoryIdFor(ctx, agent, job.policy?.repositoryId);
  const repository = await ctx.repositories.get(repositoryId);
  const repoChunkSize = repository.repo.config.chunkSize;
  if (c.chunkSize !== repoChunkSize) {
    throw new BulwarkError(
      "BULWARK_PROTO_GEOMETRY_INVALID",
      `chunk size ${c.chunkSize} differs from the repository's ${repoChunkSize}`,
      { details: { chunkSize: c.chunkSize, repositoryChunkSize: repoChunkSize } },
    );
  }
  const previous = await previousIndexValid(ctx, agent, req, c);

  let row: SessionRow;
  let token: Buffer;
  let resumed = false;
  if (req.resumeToken.length > 0) {
    token = Buffer.from(req.resumeToken);
    row = await resume(ctx, agent, c, token);
    resumed = true;
  } else {
    token = randomBytes(RESUME_TOKEN_BYTES);
    row = await create(ctx, agent, c, repositoryId, previous.previousId, token);
  }
  const { target } = await ingestTargetOf(ctx, row);
  await ctx.ingests.ensure(target); // the session is a GC root from now on
  return {
    sessionId: row.id,
    resumeToken: token,
    resumed,
    chunkIdScheme: {
      algorithm: ChunkIdAlgorithm.CHUNK_ID_ALGORITHM_HMAC_SHA256,
      key: Buffer.from(repository.repo.keys.idKey),
    },
    previousIndexValid: previous.valid,
    maxBatchBytes: MAX_UPLOAD_BATCH_BYTES,
    maxQueryIds: MAX_QUERY_IDS,
    maxIndexPartIds: MAX_INDEX_PART_IDS,
    idleTimeoutSeconds: ctx.idleTimeoutSeconds,
  };
}

/** The open session the token names, for the same agent, job and volume, with the same geometry. */
async function resume(
  ctx: IngestContext,
  agent: AgentIdentity,
  c: Checked,
  token: Buffer,
): Promise<SessionRow> {
  const row = await ctx.catalog.backupSession.findUnique({
    where: { resumeTokenHash: hashResumeToken(token) },
    include: { volume: { select: { key: true } } },
  });
  const now = ctx.now();
  if (!row || row.agentId !== agent.agentId || row.jobId !== c.jobId || row.volume.key !== c.volumeKey) {
    throw new BulwarkError(
      "BULWARK_PROTO_SESSION_NOT_FOUND",
      "the resume token names no session of this job and volume",
    );
  }
  if (row.status === "COMMITTED" || row.status === "ABORTED") {
    throw new BulwarkError(
      "BULWARK_PROTO_SESSION_CLOSED",
      `backup session ${row.id} is ${row.status.toLowerCase()}`,
      {
        details: { sessionId: row.id, status: row.status },
      },
    );
  }
  if (row.status !== "OPEN" || row.expiresAt <= now) {
    throw new BulwarkError(
      "BULWARK_PROTO_SESSION_NOT_FOUND",
      `backup session ${row.id} has expired; begin a new one`,
      {
        details: { sessionId: row.id },
      },
    );
  }
  if (Number(row.volumeSize) !== c.size || row.chunkSize !== c.chunkSize) {
    throw new BulwarkError(
      "BULWARK_PROTO_GEOMETRY_INVALID",
      "a resumed session keeps its geometry; the volume changed, so begin a new session",
      { details: { sessionId: row.id, sizeBytes: c.size, sessionSizeBytes: Number(row.volumeSize) } },
    );
  }
  const { volume: _volume, ...session } = row;
  return ctx.catalog.backupSession.update({
    where: { id: session.id },
    data: { lastActivityAt: now, expiresAt: expiryFrom(ctx, now) },
  });
}

/**
 * A new session. The volume row is locked so that two BeginSessions for one volume cannot both
 * see "no open session": only one open session exists per (agent, volume).
 */
async function create(
  ctx: IngestContext,
  agent: AgentIdentity,
  c: Checked,
  repositoryId: string,
  previousId: string | null,
  token: Buffer,
): Promise<SessionRow> {
  const now = ctx.now();
  const superseded: string[] = [];
  const row = await ctx.catalog.$transaction(async (tx) => {
    const volume = await tx.volume.upsert({
      where: { agentId_key: { agentId: agent.agentId, key: c.volumeKey } },
      create: {
        agentId: agent.agentId,
        key: c.volumeKey,
        kind: kindOfKey(c.volumeKey),
        devicePath: c.volumeKey,
        sizeBytes: BigInt(c.size),
      },
      update: { sizeBytes: BigInt(c.size), lastSeen: now },
    });
    await tx.$queryRaw`SELECT id FROM volumes WHERE id = ${volume.id}::uuid FOR UPDATE`;
    const open = await tx.backupSession.findMany({
      where: { agentId: agent.agentId, volumeId: volume.id, status: "OPEN" },
    });
    for (const s of open) {
      if (s.expiresAt <= now) {
        await tx.backupSession.update({ where: { id: s.id }, data: { status: "EXPIRED", endedAt: now } });
      } else if (s.jobId !== c.jobId) {
        throw new BulwarkError(
          "BULWARK_PROTO_SESSION_BUSY",
          `volume ${c.volumeKey} has an open session of another job`,
          { details: { sessionId: s.id, jobId: s.jobId } },
        );
      } else {
        // Same job without its token (the agent restarted and lost it): the new session replaces it.
        await tx.backupSession.update({ where: { id: s.id }, data: { status: "ABORTED", endedAt: now } });
      }
      superseded.push(s.id);
    }
    return tx.backupSession.create({
      data: {
        agentId: agent.agentId,
        volumeId: volume.id,
        repositoryId,
        jobId: c.jobId,
        resumeTokenHash: hashResumeToken(token),
        volumeSize: BigInt(c.size),
        chunkSize: c.chunkSize,
        previousId,
        expiresAt: expiryFrom(ctx, now),
      },
    });
  });
  for (const id of superseded) await ctx.ingests.abort(id);
  return row;
}
