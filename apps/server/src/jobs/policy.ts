import type { Catalog } from "@bulwark/catalog";
import { type BackupWindow, parseVolumeSelector, type Schedule, selectVolumes } from "@bulwark/schedule";

// Which policy governs a machine, and which of its volumes that policy backs up.

type PolicyRow = NonNullable<Awaited<ReturnType<Catalog["policy"]["findUnique"]>>>;
type AssignmentRow = NonNullable<Awaited<ReturnType<Catalog["policyAssignment"]["findUnique"]>>>;

export interface EffectivePolicy {
  policy: PolicyRow;
  assignment: AssignmentRow;
  /** "agent" when assigned to the machine itself, else the group it came through. */
  source: "agent" | "group";
  groupId: string | null;
}

/** The schedule part of a policy row. */
export function scheduleOf(policy: {
  scheduleCron: string;
  timezone: string;
  windowStartMinute: number | null;
  windowMinutes: number | null;
}): Schedule {
  const window: BackupWindow | null =
    policy.windowStartMinute !== null && policy.windowMinutes !== null
      ? { startMinute: policy.windowStartMinute, minutes: policy.windowMinutes }
      : null;
  return { cron: policy.scheduleCron, timezone: policy.timezone, window };
}

/**
 * The enabled policy that applies to an agent: an assignment to the agent itself wins over group
 * assignments; among several of one kind the lowest priority wins, then the oldest assignment
 * (then the ID, so every node decides alike). Disabled policies are skipped. Null: no policy.
 */
export async function effectivePolicy(catalog: Catalog, agentId: string): Promise<EffectivePolicy | null> {
  const groups = await catalog.agentGroup.findMany({ where: { agentId }, select: { groupId: true } });
  const candidates = await catalog.policyAssignment.findMany({
    where: {
      policy: { enabled: true },
      OR: [{ agentId }, { groupId: { in: groups.map((g) => g.groupId) } }],
    },
    include: { policy: true },
  });
  candidates.sort(
    (a, b) =>
      Number(b.agentId !== null) - Number(a.agentId !== null) ||
      a.priority - b.priority ||
      a.createdAt.getTime() - b.createdAt.getTime() ||
      a.id.localeCompare(b.id),
  );
  const best = candidates[0];
  if (!best) return null;
  const { policy, ...assignment } = best;
  return {
    policy,
    assignment,
    source: assignment.agentId !== null ? "agent" : "group",
    groupId: assignment.groupId,
  };
}

/** The machines an assignment covers for which it is the effective one (active agents only). */
export async function agentsGovernedBy(catalog: Catalog, assignmentId: string): Promise<string[]> {
  const a = await catalog.policyAssignment.findUnique({ where: { id: assignmentId } });
  if (!a) return [];
  const agents = await catalog.agent.findMany({
    where: {
      status: "ACTIVE",
      ...(a.agentId !== null ? { id: a.agentId } : { groups: { some: { groupId: a.groupId! } } }),
    },
    select: { id: true },
    orderBy: { id: "asc" },
  });
  const governed: string[] = [];
  for (const agent of agents) {
    if ((await effectivePolicy(catalog, agent.id))?.assignment.id === assignmentId) governed.push(agent.id);
  }
  return governed;
}

/** The agent's present volumes that the policy's selector picks. */
export async function selectedVolumes(catalog: Catalog, agentId: string, volumeSelector: unknown) {
  const selector = parseVolumeSelector(volumeSelector);
  const volumes = await catalog.volume.findMany({
    where: { agentId, goneAt: null },
    orderBy: { key: "asc" },
  });
  return oneJobPerDevice(selectVolumes(selector, volumes));
}

/**
 * One device node, one job per run: a selected DISK row is the whole device, so another selected
 * row on the same device path (an older agent's `dev:<path>` volume of a partitioned disk whose
 * partitions it could not see) would read the same device a second time.
 */
export function oneJobPerDevice<V extends { kind: string; devicePath: string }>(selected: V[]): V[] {
  const disks = new Set(selected.filter((v) => v.kind === "DISK").map((v) => v.devicePath));
  return selected.filter((v) => v.kind === "DISK" || !disks.has(v.devicePath));
}
