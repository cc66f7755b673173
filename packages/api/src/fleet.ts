// Machines (agents), their volumes and groups, and the enrollment tokens that let new ones join.
import { z } from "zod";
import { idSchema, queryBooleanSchema, timestampSchema } from "./common.js";

const tagSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[\w.:-]+$/, "letters, digits, and . _ : - only");
export const tagsSchema = z.array(tagSchema).max(50);

export const groupRefSchema = z.object({ id: idSchema, name: z.string() });

export const agentStatusFilterSchema = z.enum(["online", "offline", "revoked"]);

export const agentSchema = z.object({
  id: idSchema,
  hostname: z.string(),
  os: z.string(),
  osVersion: z.string().nullable(),
  arch: z.string().nullable(),
  agentVersion: z.string(),
  status: z.enum(["ACTIVE", "REVOKED"]),
  /** True while some server node holds the agent's control stream. */
  online: z.boolean(),
  tags: z.array(z.string()),
  groups: z.array(groupRefSchema),
  enrolledAt: timestampSchema,
  lastSeenAt: timestampSchema.nullable(),
  revokedAt: timestampSchema.nullable(),
});
export type Agent = z.infer<typeof agentSchema>;

export const agentListQuerySchema = z.object({
  group: idSchema.optional(),
  tag: tagSchema.optional(),
  status: agentStatusFilterSchema.optional(),
  /** Case-insensitive substring of the hostname. */
  search: z.string().min(1).max(200).optional(),
});

/**
 * Recovery-point status of a volume against its effective policy's schedule: `ok` when the
 * newest restore point is newer than the scheduled run before the latest one (so at most the
 * latest run may still be in progress), `late` otherwise, `none` without any restore point,
 * `unscheduled` when no enabled policy applies.
 */
export const rpoStatusSchema = z.enum(["ok", "late", "none", "unscheduled"]);

export const volumeSchema = z.object({
  id: idSchema,
  key: z.string(),
  kind: z.string(),
  devicePath: z.string(),
  mountPoint: z.string().nullable(),
  fsType: z.string().nullable(),
  label: z.string().nullable(),
  sizeBytes: z.number(),
  gone: z.boolean(),
  lastBackup: z.object({ id: idSchema, capturedAt: timestampSchema, storedBytes: z.number() }).nullable(),
  rpo: rpoStatusSchema,
});

export const effectivePolicySchema = z.object({
  policyId: idSchema,
  name: z.string(),
  via: z.enum(["agent", "group"]),
  groupId: idSchema.nullable(),
  scheduleCron: z.string(),
  timezone: z.string(),
  enabled: z.boolean(),
});

export const agentDetailSchema = agentSchema.extend({
  machineId: z.string(),
  volumes: z.array(volumeSchema),
  effectivePolicy: effectivePolicySchema.nullable(),
});
export type AgentDetail = z.infer<typeof agentDetailSchema>;

export const updateAgentRequestSchema = z
  .object({ tags: tagsSchema.optional(), groupIds: z.array(idSchema).max(100).optional() })
  .refine((u) => u.tags !== undefined || u.groupIds !== undefined, { error: "nothing to change" });

export const groupSchema = z.object({
  id: idSchema,
  name: z.string(),
  description: z.string().nullable(),
  memberCount: z.number().int(),
});
export type Group = z.infer<typeof groupSchema>;

const groupNameSchema = z.string().trim().min(1).max(100);
export const createGroupRequestSchema = z.object({
  name: groupNameSchema,
  description: z.string().max(1000).optional(),
});
export const updateGroupRequestSchema = z
  .object({ name: groupNameSchema.optional(), description: z.string().max(1000).nullable().optional() })
  .refine((u) => u.name !== undefined || u.description !== undefined, { error: "nothing to change" });

export const groupMemberParamsSchema = z.object({ id: idSchema, agentId: idSchema });

export const enrollmentTokenSchema = z.object({
  id: idSchema,
  groupId: idSchema.nullable(),
  tags: z.array(z.string()),
  createdAt: timestampSchema,
  expiresAt: timestampSchema,
  usedAt: timestampSchema.nullable(),
  revokedAt: timestampSchema.nullable(),
});
export type EnrollmentToken = z.infer<typeof enrollmentTokenSchema>;

/** Longest an enrollment token may live: it lets any machine join the fleet. */
export const MAX_ENROLLMENT_TOKEN_TTL_SECONDS = 30 * 24 * 3600;

export const createEnrollmentTokenRequestSchema = z.object({
  groupId: idSchema.optional(),
  tags: tagsSchema.optional(),
  ttlSeconds: z
    .number()
    .int()
    .min(60)
    .max(MAX_ENROLLMENT_TOKEN_TTL_SECONDS)
    .default(24 * 3600),
});

export const createEnrollmentTokenResponseSchema = z.object({
  id: idSchema,
  expiresAt: timestampSchema,
  /** Shown once: the token file to hand to `bulwark-agent enroll --token-file`. */
  tokenFile: z.string(),
});

export const enrollmentTokenListQuerySchema = z.object({ active: queryBooleanSchema.optional() });
