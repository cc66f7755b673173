// The append-only audit log.
import { z } from "zod";
import { timestampSchema } from "./common.js";

export const auditEventSchema = z.object({
  id: z.string(),
  at: timestampSchema,
  actorType: z.enum(["USER", "API_TOKEN", "AGENT", "SYSTEM"]),
  actorId: z.string().nullable(),
  actorName: z.string().nullable(),
  action: z.string(),
  targetType: z.string().nullable(),
  targetId: z.string().nullable(),
  outcome: z.enum(["SUCCESS", "FAILURE", "DENIED"]),
  ip: z.string().nullable(),
  details: z.unknown().nullable(),
});
export type AuditEvent = z.infer<typeof auditEventSchema>;

export const auditListQuerySchema = z.object({
  /** Exact action, or a prefix ending in "." (e.g. "auth."). */
  action: z.string().min(1).max(100).optional(),
  actorId: z.string().min(1).max(100).optional(),
  targetType: z.string().min(1).max(100).optional(),
  targetId: z.string().min(1).max(100).optional(),
  outcome: z.enum(["SUCCESS", "FAILURE", "DENIED"]).optional(),
  from: timestampSchema.optional(),
  to: timestampSchema.optional(),
});
