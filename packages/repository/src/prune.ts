import type { RetentionPolicy } from "@bulwark/retention";
import type { Repository } from "./repository.js";

/**
 * Prune: apply a GFS retention policy (decided by @bulwark/retention) per volume name, then delete
 * the records of the points it does not keep. Space comes back with the next GC. Safe beside
 * ingest (a pruned base stays marked through its session), verify and GC; one prune at a time.
 */
export interface PruneOptions {
  dryRun?: boolean;
  /** IANA timezone calendar buckets are cut in (default UTC). */
  timezone?: string;
}

export interface PruneDecision {
  id: string;
  name: string;
  createdAt: string;
}

export interface PruneReport {
  dryRun: boolean;
  keep: (PruneDecision & { reasons: string[] })[];
  remove: (PruneDecision & { reason: string })[];
  deleted: number;
}

export async function prune(
  repo: Repository,
  policy: RetentionPolicy,
  opts: PruneOptions = {},
): Promise<PruneReport> {
  // Loaded here, not at the top: @bulwark/retention brings zod (about 100 modules), which every
  // other command of the offline tool (cat, put) would otherwise compile at start-up.
  const { planRetention } = await import("@bulwark/retention");
  const points = await repo.listPoints();
  const byName = new Map<string, typeof points>();
  for (const p of points) byName.set(p.name, [...(byName.get(p.name) ?? []), p]);
  const report: PruneReport = { dryRun: !!opts.dryRun, keep: [], remove: [], deleted: 0 };
  const now = new Date(repo.clock.now());
  for (const group of byName.values()) {
    const plan = planRetention(
      group.map((p) => ({ id: p.id, time: new Date(p.createdAt) })),
      policy,
      { ...(opts.timezone ? { timezone: opts.timezone } : {}), now },
    );
    const info = new Map(group.map((p) => [p.id, { id: p.id, name: p.name, createdAt: p.createdAt }]));
    for (const k of plan.keep) report.keep.push({ ...info.get(k.id)!, reasons: [...k.reasons] });
    for (const r of plan.remove) report.remove.push({ ...info.get(r.id)!, reason: r.reason });
  }
  if (!opts.dryRun) {
    for (const r of report.remove) if (await repo.deletePoint(r.id)) report.deleted++;
  }
  return report;
}
