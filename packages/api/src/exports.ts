// Instant access: a restore point served read-only (or copy-on-write) over NBD by a server node.
import { z } from "zod";
import { idSchema, timestampSchema } from "./common.js";

export const openExportRequestSchema = z.object({
  /** Writes go to a throw-away overlay; the restore point itself never changes. */
  writable: z.boolean().default(false),
  /** 60 s to 7 days; default 1 hour. */
  ttlSeconds: z
    .number()
    .int()
    .min(60)
    .max(7 * 24 * 3600)
    .default(3600),
});

export const exportSchema = z.object({
  id: z.string(),
  backupId: idSchema,
  writable: z.boolean(),
  /** Bytes the NBD client sees (the volume, padded to whole 512-byte sectors). */
  size: z.number(),
  expiresAt: timestampSchema,
});
export type Export = z.infer<typeof exportSchema>;

export const openedExportSchema = exportSchema.extend({
  /** nbd://host:port/<name>: the name is the secret; it is in this answer only. */
  uri: z.string(),
});

export const exportSummarySchema = exportSchema.extend({
  createdAt: timestampSchema,
  connections: z.number().int(),
  requestedBy: z.object({
    actorType: z.string(),
    actorId: z.string().nullable(),
    actorName: z.string().nullable(),
  }),
});

export const exportIdParamsSchema = z.object({ id: z.string().min(1).max(100) });
