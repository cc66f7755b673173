// Backup policies and where they apply.
import { retentionPolicySchema } from "@bulwark/retention";
import { z } from "zod";
import { idSchema, timestampSchema } from "./common.js";

const MINUTES_PER_DAY = 24 * 60;

/** Which volumes of a machine a policy backs up. */
export const volumeSelectorSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("all-fixed") }),
  z.strictObject({
    kind: z.literal("mount-points"),
    mountPoints: z.array(z.string().min(1).max(4096)).min(1).max(64),
  }),
  z.strictObject({
    kind: z.literal("devices"),
    devices: z.array(z.string().min(1).max(4096)).min(1).max(64),
  }),
]);
export type VolumeSelector = z.infer<typeof volumeSelectorSchema>;

/** Five whitespace-separated cron fields; the server also checks that the expression parses. */
const cronSchema = z
  .string()
  .trim()
  .max(200)
  .regex(/^\S+(\s+\S+){4}$/, "a five-field cron expression (minute hour day-of-month month day-of-week)");

const hookSchema = z.string().min(1).max(4096);

const policyFields = {
  name: z.string().trim().min(1).max(100),
  description: z.string().max(1000).nullable().optional(),
  enabled: z.boolean().optional(),
  scheduleCron: cronSchema,
  /** IANA timezone name the schedule and the window are read in. */
  timezone: z.string().min(1).max(64),
  /** Backup window: opens this many minutes after local midnight … */
  windowStartMinute: z
    .number()
    .int()
    .min(0)
    .max(MINUTES_PER_DAY - 1)
    .nullable()
    .optional(),
  /** … and stays open this long. Both or neither. */
  windowMinutes: z.number().int().min(1).max(MINUTES_PER_DAY).nullable().optional(),
  retention: retentionPolicySchema,
  volumeSelector: volumeSelectorSchema,
  preHook: hookSchema.nullable().optional(),
  postHook: hookSchema.nullable().optional(),
  bandwidthLimitBps: z.number().int().min(1).nullable().optional(),
  repositoryId: idSchema,
};

function windowBothOrNeither(p: { windowStartMinute?: number | null; windowMinutes?: number | null }) {
  return (p.windowStartMinute == null) === (p.windowMinutes == null);
}

export const createPolicyRequestSchema = z.object(policyFields).refine(windowBothOrNeither, {
  error: "windowStartMinute and windowMinutes go together",
  path: ["windowMinutes"],
});
export type CreatePolicyRequest = z.infer<typeof createPolicyRequestSchema>;

export const updatePolicyRequestSchema = z
  .object(policyFields)
  .partial()
  .refine((u) => Object.values(u).some((v) => v !== undefined), { error: "nothing to change" });
export type UpdatePolicyRequest = z.infer<typeof updatePolicyRequestSchema>;

export const policySchema = z.object({
  id: idSchema,
  name: z.string(),
  description: z.string().nullable(),
  enabled: z.boolean(),
  scheduleCron: z.string(),
  timezone: z.string(),
  windowStartMinute: z.number().nullable(),
  windowMinutes: z.number().nullable(),
  retention: z.record(z.string(), z.number()),
  volumeSelector: volumeSelectorSchema,
  preHook: z.string().nullable(),
  postHook: z.string().nullable(),
  bandwidthLimitBps: z.number().nullable(),
  repositoryId: idSchema,
  /** Incremented on every change; jobs record the revision they ran under. */
  revision: z.number().int(),
  createdAt: timestampSchema,
  updatedAt: timestampSchema,
});
export type Policy = z.infer<typeof policySchema>;

export const policyListQuerySchema = z.object({
  repositoryId: idSchema.optional(),
  search: z.string().min(1).max(200).optional(),
});

export const assignmentSchema = z.object({
  id: idSchema,
  policyId: idSchema,
  groupId: idSchema.nullable(),
  agentId: idSchema.nullable(),
  priority: z.number().int(),
  createdAt: timestampSchema,
});
export type Assignment = z.infer<typeof assignmentSchema>;

/** A policy applies to exactly one of a group or an agent. */
export const createAssignmentRequestSchema = z
  .object({
    policyId: idSchema,
    groupId: idSchema.optional(),
    agentId: idSchema.optional(),
    /** Among group assignments of one agent the lowest priority wins; a direct agent assignment wins over all. */
    priority: z.number().int().min(0).max(10_000).default(100),
  })
  .refine((a) => (a.groupId === undefined) !== (a.agentId === undefined), {
    error: "give exactly one of groupId and agentId",
    path: ["groupId"],
  });

export const assignmentListQuerySchema = z.object({
  policyId: idSchema.optional(),
  groupId: idSchema.optional(),
  agentId: idSchema.optional(),
});
