import type { Catalog } from "@bulwark/catalog";
import type { JobQueues } from "./queues.js";
import { queueCall } from "./queues.js";

// One BullMQ job scheduler per policy assignment (and one each for GC and verify) on the
// "schedule" queue. Scheduler IDs are deterministic (`assignment:<id>`), and upsertJobScheduler
// is one atomic Redis script, so two nodes syncing at once, or a node restarting, leave exactly one
// scheduler per assignment; the next run's job ID (`repeat:<scheduler>:<time>`) is deterministic too.

export type TickData =
  | { type: "assignment"; assignmentId: string; policyId: string }
  | { type: "gc" }
  | { type: "verify" };

export const TICK_JOB_NAME = "tick";
const ASSIGNMENT_PREFIX = "assignment:";
export const GC_SCHEDULER_ID = "maintenance:gc";
export const VERIFY_SCHEDULER_ID = "maintenance:verify";

export const assignmentSchedulerId = (assignmentId: string) => `${ASSIGNMENT_PREFIX}${assignmentId}`;

export interface MaintenanceSchedule {
  gcCron: string;
  verifyCron: string;
  timezone: string;
}

interface AssignmentWithPolicy {
  id: string;
  policyId: string;
  policy: { scheduleCron: string; timezone: string; enabled: boolean };
}

async function upsertAssignment(queues: JobQueues, a: AssignmentWithPolicy): Promise<void> {
  const data: TickData = { type: "assignment", assignmentId: a.id, policyId: a.policyId };
  await queues
    .queue("schedule")
    .upsertJobScheduler(
      assignmentSchedulerId(a.id),
      { pattern: a.policy.scheduleCron, tz: a.policy.timezone },
      { name: TICK_JOB_NAME, data },
    );
}

async function schedulerIds(queues: JobQueues): Promise<{ id: string; policyId?: string }[]> {
  const all = await queues.queue("schedule").getJobSchedulers(0, -1);
  return all.flatMap((s) => {
    const id = s.id ?? s.key;
    const data = s.template?.data as TickData | undefined;
    return id ? [{ id, ...(data?.type === "assignment" ? { policyId: data.policyId } : {}) }] : [];
  });
}

/** Removes the scheduler of an assignment unless the catalog (read now) still wants it. */
async function removeIfGone(catalog: Catalog, queues: JobQueues, schedulerId: string): Promise<boolean> {
  const assignmentId = schedulerId.slice(ASSIGNMENT_PREFIX.length);
  // Re-read: another node may have created this assignment after our list was taken.
  const still = await catalog.policyAssignment.findFirst({
    where: { id: assignmentId, policy: { enabled: true } },
    select: { id: true },
  });
  if (still) return false;
  return queues.queue("schedule").removeJobScheduler(schedulerId);
}

/**
 * Makes Redis's schedulers match the catalog: one per assignment of an enabled policy, none for
 * deleted assignments or disabled policies, plus GC and verify. Run at start (after a Redis flush
 * it recreates everything) and whenever many policies may have changed.
 */
export async function syncSchedules(
  catalog: Catalog,
  queues: JobQueues,
  maintenance?: MaintenanceSchedule,
): Promise<{ upserted: number; removed: number }> {
  return queueCall("syncing job schedulers", async () => {
    const assignments = await catalog.policyAssignment.findMany({
      where: { policy: { enabled: true } },
      select: {
        id: true,
        policyId: true,
        policy: { select: { scheduleCron: true, timezone: true, enabled: true } },
      },
    });
    for (const a of assignments) await upsertAssignment(queues, a);
    const wanted = new Set(assignments.map((a) => assignmentSchedulerId(a.id)));
    let removed = 0;
    for (const s of await schedulerIds(queues)) {
      if (
        s.id.startsWith(ASSIGNMENT_PREFIX) &&
        !wanted.has(s.id) &&
        (await removeIfGone(catalog, queues, s.id))
      ) {
        removed++;
      }
    }
    if (maintenance) {
      const q = queues.queue("schedule");
      await q.upsertJobScheduler(
        GC_SCHEDULER_ID,
        { pattern: maintenance.gcCron, tz: maintenance.timezone },
        { name: TICK_JOB_NAME, data: { type: "gc" } satisfies TickData },
      );
      await q.upsertJobScheduler(
        VERIFY_SCHEDULER_ID,
        { pattern: maintenance.verifyCron, tz: maintenance.timezone },
        { name: TICK_JOB_NAME, data: { type: "verify" } satisfies TickData },
      );
    }
    return { upserted: assignments.length, removed };
  });
}

/**
 * After a policy or its assignments changed (created, edited, enabled, disabled, deleted): upserts
 * the schedulers of its assignments when it is enabled, and removes the rest of its schedulers.
 */
export async function syncPolicySchedules(
  catalog: Catalog,
  queues: JobQueues,
  policyId: string,
): Promise<{ upserted: number; removed: number }> {
  return queueCall("syncing a policy's job schedulers", async () => {
    const policy = await catalog.policy.findUnique({
      where: { id: policyId },
      include: { assignments: { select: { id: true, policyId: true } } },
    });
    const live = policy?.enabled ? policy.assignments : [];
    for (const a of live) await upsertAssignment(queues, { ...a, policy: policy! });
    const wanted = new Set(live.map((a) => assignmentSchedulerId(a.id)));
    let removed = 0;
    for (const s of await schedulerIds(queues)) {
      if (s.policyId === policyId && !wanted.has(s.id) && (await removeIfGone(catalog, queues, s.id)))
        removed++;
    }
    return { upserted: live.length, removed };
  });
}
