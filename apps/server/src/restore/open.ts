import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import {
  ChunkIdAlgorithm,
  DEFAULT_RESTORE_WINDOW_CHUNKS,
  type RestoreHeader,
  RestoreMode,
  type RestoreStart,
} from "@bulwark/protocol";
import { type Repository, type RestorePoint, TreeReader } from "@bulwark/repository";
import { z } from "zod";
import type { AgentIdentity } from "../grpc/identity.js";
import { isUuid } from "../ingest/sessions.js";
import type { RepositoryRegistry } from "../repositories/registry.js";

// Start of a restore stream: the job must be a RESTORE job assigned to the calling agent (an
// unknown job and another agent's job get the same answer, so IDs cannot be probed), still
// QUEUED or RUNNING, asking for the mode the agent asks for, and naming an AVAILABLE restore
// point of the job's tenant whose index the repository can open.

export interface RestoreServiceContext {
  catalog: Catalog;
  repositories: RepositoryRegistry;
  now: () => Date;
}

/**
 * The RESTORE job's params as the job system writes them (Job.params). Restore points are
 * `Backup` rows; `mode` is stored upper or lower case. Extra keys (target, confirmation flags,
 * whole disk) are the agent's business and travel in RestoreCommand; they are ignored here.
 */
export const restoreJobParams = z.looseObject({
  backupId: z.uuid(),
  mode: z
    .string()
    .transform((m) => m.toUpperCase())
    .pipe(z.enum(["FULL", "DELTA"])),
  targetPath: z.string().optional(),
});

export type RestoreJobParams = z.infer<typeof restoreJobParams>;

export interface OpenedRestore {
  jobId: string;
  tenantId: string;
  backupId: string;
  params: RestoreJobParams;
  repo: Repository;
  point: RestorePoint;
  tree: TreeReader;
  header: RestoreHeader;
  /** True when the job was already RUNNING (a resumed or repeated stream). */
  wasRunning: boolean;
}

function jobNotFound(jobId: string): BulwarkError {
  return new BulwarkError(
    "BULWARK_RESTORE_JOB_NOT_FOUND",
    `restore job ${jobId} is not assigned to this agent`,
    {
      details: { jobId },
    },
  );
}

function pointUnavailable(backupId: string, why: string, cause?: unknown): BulwarkError {
  return new BulwarkError("BULWARK_RESTORE_POINT_UNAVAILABLE", `restore point ${backupId} ${why}`, {
    details: { restorePointId: backupId },
    ...(cause ? { cause } : {}),
  });
}

/**
 * Chunk bytes a restore keeps requested but not written (the Header's window): enough that the
 * server's reads, the wire and the agent's decoding and writes of four Wants overlap. It is also
 * what one stream may hold in memory on either side.
 */
const RESTORE_WINDOW_BYTES = 4 * 1024 * 1024;
/**
 * A delta restore's window is this many times larger: most of its chunks come back as "unchanged"
 * in a RangeDone, so with the full window it spent its time on Want round trips (1 MiB each),
 * not on data. Memory stays bounded by the window if everything did differ (16 MiB).
 */
const DELTA_WINDOW_FACTOR = 4;

/** The window in chunks: RESTORE_WINDOW_BYTES (delta: ×4), and never fewer than the protocol's default. */
export function restoreWindowChunks(chunkSize: number, mode: RestoreJobParams["mode"]): number {
  const bytes = RESTORE_WINDOW_BYTES * (mode === "DELTA" ? DELTA_WINDOW_FACTOR : 1);
  return Math.max(DEFAULT_RESTORE_WINDOW_CHUNKS, Math.floor(bytes / chunkSize));
}

const PROTO_MODE: Record<RestoreJobParams["mode"], RestoreMode> = {
  FULL: RestoreMode.RESTORE_MODE_FULL,
  DELTA: RestoreMode.RESTORE_MODE_DELTA,
};

/** Validates Start against the catalog and the repository; the Header to answer with. */
export async function openRestore(
  ctx: RestoreServiceContext,
  agent: AgentIdentity,
  start: RestoreStart,
): Promise<OpenedRestore> {
  if (start.jobId === "") throw new BulwarkError("BULWARK_PROTO_MALFORMED", "start.job_id is required");
  if (!isUuid(start.jobId)) throw jobNotFound(start.jobId);
  const job = await ctx.catalog.job.findUnique({ where: { id: start.jobId } });
  if (job?.kind !== "RESTORE" || job.agentId !== agent.agentId || job.tenantId !== agent.tenantId) {
    throw jobNotFound(start.jobId);
  }
  const notRunnable = () =>
    new BulwarkError("BULWARK_RESTORE_JOB_NOT_RUNNABLE", `restore job ${job.id} is ${job.state}`, {
      details: { jobId: job.id, state: job.state },
    });
  // A SUCCEEDED job may only be "resumed" at its very end: the agent finished and synced
  // everything but lost the Finished message, and asks again (it gets Header and Finished).
  if (job.state !== "QUEUED" && job.state !== "RUNNING" && job.state !== "SUCCEEDED") throw notRunnable();
  const parsed = restoreJobParams.safeParse(job.params);
  if (!parsed.success) {
    throw new BulwarkError("BULWARK_RESTORE_JOB_INVALID", `restore job ${job.id} has unusable params`, {
      details: { jobId: job.id, issues: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) },
    });
  }
  const params = parsed.data;
  if (start.mode !== PROTO_MODE[params.mode]) {
    throw new BulwarkError(
      "BULWARK_RESTORE_MODE_MISMATCH",
      `restore job ${job.id} is a ${params.mode.toLowerCase()} restore`,
      { details: { jobId: job.id, jobMode: params.mode, requested: RestoreMode[start.mode] ?? start.mode } },
    );
  }

  const backup = await ctx.catalog.backup.findFirst({
    where: { id: params.backupId, tenantId: job.tenantId },
    include: { volume: { select: { key: true, devicePath: true } } },
  });
  if (!backup) throw pointUnavailable(params.backupId, "does not exist");
  if (backup.status !== "AVAILABLE") throw pointUnavailable(params.backupId, `is ${backup.status}`);
  let repo: Repository;
  let point: RestorePoint;
  try {
    repo = (await ctx.repositories.get(backup.repositoryId)).repo;
    point = await repo.readPoint(backup.indexRef);
  } catch (cause) {
    const code = cause instanceof BulwarkError ? cause.code : "unexpected error";
    throw pointUnavailable(params.backupId, `cannot be read on this server node (${code})`, cause);
  }
  if (point.volumeSize !== Number(backup.volumeSize) || point.chunkSize !== backup.chunkSize) {
    throw pointUnavailable(params.backupId, "disagrees with its catalog row (size or chunk size)");
  }
  const tree = new TreeReader(repo, point);
  const totalChunks = tree.geometry.chunkCount;
  if (job.state === "SUCCEEDED" && start.resumeFromIndex !== totalChunks) throw notRunnable();
  if (start.resumeFromIndex > totalChunks) {
    throw new BulwarkError(
      "BULWARK_RESTORE_BAD_RANGE",
      `resume_from_index ${start.resumeFromIndex} is beyond the ${totalChunks} chunks of the volume`,
      { details: { resumeFromIndex: start.resumeFromIndex, totalChunks } },
    );
  }

  const header: RestoreHeader = {
    restorePointId: backup.id,
    geometry: { sizeBytes: point.volumeSize, chunkSize: point.chunkSize, logicalSectorSize: 512 },
    chunkIdScheme: {
      algorithm: ChunkIdAlgorithm.CHUNK_ID_ALGORITHM_HMAC_SHA256,
      key: Buffer.from(repo.keys.idKey),
    },
    totalChunks,
    indexDigest: Buffer.from(backup.indexDigest ?? Buffer.alloc(0)),
    windowChunks: restoreWindowChunks(point.chunkSize, params.mode),
    sourceVolumeKey: backup.volume.key,
    sourceDevicePath: backup.volume.devicePath,
    sourceAgent: backup.agentId === agent.agentId,
  };
  return {
    jobId: job.id,
    tenantId: job.tenantId,
    backupId: backup.id,
    params,
    repo,
    point,
    tree,
    header,
    wasRunning: job.state === "RUNNING",
  };
}
