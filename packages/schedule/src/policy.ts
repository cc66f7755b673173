import { BulwarkError } from "@bulwark/errors";
import { isValidTimeZone, retentionPolicySchema } from "@bulwark/retention";
import { z } from "zod";
import { isValidCron } from "./cron.js";
import { MINUTES_PER_DAY } from "./window.js";

// What a person may send to create or change a policy (the REST API and the console use these),
// and which of a machine's volumes a policy's selector picks.

/** Enough for any real fleet's list; bounds the work of matching. */
const MAX_SELECTOR_ENTRIES = 64;
const PATH_MAX = 4096;
/** A hook runs one command; a script belongs in a file on the machine. */
const HOOK_MAX = 4096;

const pathList = (what: string) =>
  z
    .array(
      z
        .string()
        .trim()
        .min(1, { message: `empty ${what}` })
        .max(PATH_MAX),
    )
    .min(1, { message: `at least one ${what}` })
    .max(MAX_SELECTOR_ENTRIES);

/**
 * Which volumes of a machine a policy backs up: every fixed volume, volumes mounted at the listed
 * mount points (or drive letters), or the listed device paths.
 */
export const volumeSelectorSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("all-fixed") }),
  z.strictObject({ kind: z.literal("mount-points"), mountPoints: pathList("mount point") }),
  z.strictObject({ kind: z.literal("devices"), devices: pathList("device path") }),
]);
export type VolumeSelector = z.output<typeof volumeSelectorSchema>;

export const backupWindowSchema = z.strictObject({
  startMinute: z
    .number()
    .int()
    .min(0)
    .max(MINUTES_PER_DAY - 1),
  minutes: z.number().int().min(1).max(MINUTES_PER_DAY),
});

const hook = z.string().trim().min(1).max(HOOK_MAX).nullable().optional();

const policyFields = {
  name: z.string().trim().min(1).max(100),
  description: z.string().max(1000).nullable().optional(),
  enabled: z.boolean(),
  /** Five-field cron expression evaluated in `timezone`. */
  scheduleCron: z.string().trim().min(1).max(200),
  /** IANA timezone name. */
  timezone: z.string().trim().min(1).max(100),
  /** Null = runs may start any time until the next run. */
  window: backupWindowSchema.nullable(),
  retention: retentionPolicySchema,
  volumeSelector: volumeSelectorSchema,
  /** Run on the machine before the snapshot (a failure fails the job); through /bin/sh -c. */
  preHook: hook,
  /** Run on the machine after the snapshot is released, whatever the outcome. */
  postHook: hook,
  /** Upload limit per machine in bytes per second; null = unlimited. */
  bandwidthLimitBps: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).nullable().optional(),
  repositoryId: z.uuid(),
};

type ScheduleFields = { scheduleCron?: string | undefined; timezone?: string | undefined };

function checkSchedule(p: ScheduleFields, ctx: z.RefinementCtx): void {
  if (p.timezone !== undefined && !isValidTimeZone(p.timezone)) {
    ctx.addIssue({ code: "custom", path: ["timezone"], message: `unknown IANA timezone ${p.timezone}` });
    return;
  }
  if (p.scheduleCron !== undefined && !isValidCron(p.scheduleCron, p.timezone ?? "UTC")) {
    ctx.addIssue({
      code: "custom",
      path: ["scheduleCron"],
      message: "expected a five-field cron expression (minute hour day month weekday) that fires",
    });
  }
}

/** A new policy. */
export const policyInputSchema = z
  .strictObject({ ...policyFields, enabled: policyFields.enabled.default(true) })
  .superRefine(checkSchedule);
export type PolicyInput = z.output<typeof policyInputSchema>;

/**
 * A change to a policy: any subset of fields. A cron expression is checked against the timezone
 * sent with it (or UTC); the server re-checks the merged policy with `policyInputSchema`.
 */
export const policyPatchSchema = z
  .strictObject(policyFields)
  .partial()
  .superRefine(checkSchedule)
  .refine((p) => Object.keys(p).length > 0, { message: "nothing to change" });
export type PolicyPatch = z.output<typeof policyPatchSchema>;

/** An assignment: exactly one of group or agent. */
export const policyAssignmentInputSchema = z
  .strictObject({
    groupId: z.uuid().optional(),
    agentId: z.uuid().optional(),
    priority: z.number().int().min(0).max(10_000).default(100),
  })
  .refine((a) => (a.groupId === undefined) !== (a.agentId === undefined), {
    message: "name exactly one of groupId or agentId",
  });
export type PolicyAssignmentInput = z.output<typeof policyAssignmentInputSchema>;

/** Parses a stored selector (catalog JSON), throwing BULWARK_JOB_SCHEDULE_INVALID if it is malformed. */
export function parseVolumeSelector(input: unknown): VolumeSelector {
  const r = volumeSelectorSchema.safeParse(input);
  if (!r.success) {
    throw new BulwarkError("BULWARK_JOB_SCHEDULE_INVALID", "malformed volume selector", {
      details: { issues: r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) },
    });
  }
  return r.data;
}

/** The volume facts selection needs (the catalog's Volume row has them). */
export interface SelectableVolume {
  kind: "DISK" | "PARTITION" | "LVM_LV" | "LVM_THIN_LV" | "WINDOWS_VOLUME" | "IMAGE_FILE";
  devicePath: string;
  mountPoint: string | null;
  goneAt: Date | null;
}

/**
 * Kinds "all-fixed" takes: filesystems' volumes. Whole disks are left out (their partitions are
 * selected already, and backing up both would read every block twice) and so are image files
 * (test and demo sources, not the machine's storage).
 */
export const FIXED_VOLUME_KINDS: readonly SelectableVolume["kind"][] = [
  "PARTITION",
  "LVM_LV",
  "LVM_THIN_LV",
  "WINDOWS_VOLUME",
];

/** Mount points compare without a trailing separator and, for drive letters, case-insensitively. */
function normalizeMount(m: string): string {
  const trimmed = m.length > 1 ? m.replace(/[/\\]+$/, "") : m;
  return /^[a-z]:$/i.test(trimmed) ? trimmed.toUpperCase() : trimmed;
}

/** The volumes a selector picks among the present (not gone) ones, in input order. */
export function selectVolumes<V extends SelectableVolume>(
  selector: VolumeSelector,
  volumes: readonly V[],
): V[] {
  const present = volumes.filter((v) => v.goneAt === null);
  switch (selector.kind) {
    case "all-fixed":
      return present.filter((v) => FIXED_VOLUME_KINDS.includes(v.kind));
    case "mount-points": {
      const wanted = new Set(selector.mountPoints.map(normalizeMount));
      return present.filter((v) => v.mountPoint !== null && wanted.has(normalizeMount(v.mountPoint)));
    }
    case "devices": {
      const wanted = new Set(selector.devices);
      return present.filter((v) => wanted.has(v.devicePath));
    }
  }
}
