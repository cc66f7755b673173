// Restore points, jobs and repository status.
import { z } from "zod";
import { idSchema, timestampSchema } from "./common.js";

export const backupSchema = z.object({
  id: idSchema,
  agentId: idSchema,
  volumeId: idSchema,
  repositoryId: idSchema,
  jobId: idSchema.nullable(),
  status: z.enum(["AVAILABLE", "DELETING"]),
  capturedAt: timestampSchema,
  committedAt: timestampSchema,
  volumeSize: z.number(),
  chunkSize: z.number().int(),
  storedBytes: z.number(),
  changedBytes: z.number(),
  method: z.enum(["CBT", "BITMAP_HASH", "FULL_HASH"]),
  previousId: idSchema.nullable(),
  deletingSince: timestampSchema.nullable(),
});
export type Backup = z.infer<typeof backupSchema>;

export const backupListQuerySchema = z.object({
  agentId: idSchema.optional(),
  volumeId: idSchema.optional(),
  status: z.enum(["AVAILABLE", "DELETING"]).optional(),
  /** capturedAt >= from */
  from: timestampSchema.optional(),
  /** capturedAt < to */
  to: timestampSchema.optional(),
});

export const jobKindSchema = z.enum(["BACKUP", "RESTORE", "VERIFY", "PRUNE", "GC"]);
export const jobStateSchema = z.enum(["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "MISSED"]);
export const TERMINAL_JOB_STATES = ["SUCCEEDED", "FAILED", "CANCELLED", "MISSED"] as const;

export const jobSchema = z.object({
  id: idSchema,
  kind: jobKindSchema,
  state: jobStateSchema,
  agentId: idSchema.nullable(),
  policyId: idSchema.nullable(),
  requestedById: idSchema.nullable(),
  params: z.unknown(),
  result: z.unknown().nullable(),
  progress: z.number(),
  bytesDone: z.number(),
  bytesTotal: z.number().nullable(),
  attempts: z.number().int(),
  maxAttempts: z.number().int(),
  errorCode: z.string().nullable(),
  errorMessage: z.string().nullable(),
  createdAt: timestampSchema,
  scheduledFor: timestampSchema.nullable(),
  startedAt: timestampSchema.nullable(),
  finishedAt: timestampSchema.nullable(),
  /** The job this one retries (POST /jobs/:id/retry), else null. */
  retryOfId: idSchema.nullable(),
  /** When someone first asked to cancel it; a running job stays RUNNING until its worker has stopped it. */
  cancelRequestedAt: timestampSchema.nullable(),
});
export type Job = z.infer<typeof jobSchema>;

export const jobListQuerySchema = z.object({
  kind: jobKindSchema.optional(),
  state: jobStateSchema.optional(),
  agentId: idSchema.optional(),
  policyId: idSchema.optional(),
  /** createdAt >= from */
  from: timestampSchema.optional(),
  /** createdAt < to */
  to: timestampSchema.optional(),
});

export const runBackupRequestSchema = z.object({ agentId: idSchema, volumeId: idSchema });

/** Restore a restore point onto a device or image file of a machine (the backup's own by default). */
export const startRestoreRequestSchema = z.object({
  backupId: idSchema,
  /** The machine that writes the target; defaults to the restore point's own machine. */
  agentId: idSchema.optional(),
  /** Device or image file on that machine, e.g. /dev/sdb1. */
  targetPath: z.string().min(1).max(4096),
  /** `delta` rewrites only the blocks that differ from what the target already holds. */
  mode: z.enum(["full", "delta"]).default("full"),
  /** Allow a target that is not the volume the restore point came from. */
  allowForeignTarget: z.boolean().optional(),
  /** The restore point is a whole disk (partition table included). */
  wholeDisk: z.boolean().optional(),
  /** A retry with the same key returns the same job instead of starting a second restore. */
  idempotencyKey: z.string().min(1).max(200).optional(),
});
export type StartRestoreRequest = z.infer<typeof startRestoreRequestSchema>;

/** One server-sent event on GET /api/v1/jobs/:id/events (`event: progress`, data = this). */
export const jobProgressEventSchema = z.object({
  id: idSchema,
  state: jobStateSchema,
  progress: z.number(),
  bytesDone: z.number(),
  bytesTotal: z.number().nullable(),
  errorCode: z.string().nullable(),
  errorMessage: z.string().nullable(),
});
export type JobProgressEvent = z.infer<typeof jobProgressEventSchema>;

const maintenanceRunSchema = z
  .object({
    jobId: idSchema,
    state: jobStateSchema,
    finishedAt: timestampSchema.nullable(),
    result: z.unknown().nullable(),
    errorCode: z.string().nullable(),
  })
  .nullable();

export const repositoryStatusSchema = z.object({
  id: idSchema,
  name: z.string(),
  kind: z.enum(["LOCAL", "S3"]),
  location: z.string(),
  createdAt: timestampSchema,
  chunkCount: z.number(),
  /** Bytes the chunks take in the repository (compressed and encrypted). */
  storedBytes: z.number(),
  /** Plaintext bytes of the distinct chunks. */
  plainBytes: z.number(),
  backupCount: z.number().int(),
  /** Changed bytes agents reported over all available restore points. */
  ingestedBytes: z.number(),
  /** ingestedBytes / plainBytes (null while empty): what deduplication saves. */
  dedupRatio: z.number().nullable(),
  /** plainBytes / storedBytes (null while empty): what compression saves. */
  compressionRatio: z.number().nullable(),
  lastVerify: maintenanceRunSchema,
  lastGc: maintenanceRunSchema,
});
export type RepositoryStatus = z.infer<typeof repositoryStatusSchema>;
