// What GET /api/v1/metrics reports, computed at scrape time from the catalog (and the job queues
// when this node runs a job system), scoped to one tenant. Nothing is cached or counted in memory,
// so every node of a cluster answers the same and a restart loses nothing.

import type { Catalog } from "@bulwark/catalog";
import type { QueueDepths } from "../http/deps.js";
import { rpoStatus } from "../http/routes/agents.js";
import { repositoryUsage } from "../http/routes/repositories.js";
import { effectivePolicy } from "../jobs/policy.js";
import type { MetricFamily, Sample } from "./exposition.js";

const AGENT_STATUSES = ["online", "offline", "revoked"] as const;

export interface CollectOptions {
  catalog: Catalog;
  tenantId: string;
  now: Date;
  queues?: QueueDepths;
}

async function agentFamily(catalog: Catalog, tenantId: string): Promise<MetricFamily> {
  const [revoked, online, total] = await Promise.all([
    catalog.agent.count({ where: { tenantId, status: "REVOKED" } }),
    catalog.agent.count({ where: { tenantId, status: "ACTIVE", connectedNode: { not: null } } }),
    catalog.agent.count({ where: { tenantId } }),
  ]);
  // The same definition as GET /agents?status=: online = active with a control stream held by a node.
  const counts = { online, offline: total - revoked - online, revoked };
  return {
    name: "bulwark_agents",
    help: "Machines by status (online: active with a control stream; offline: active without; revoked).",
    type: "gauge",
    samples: AGENT_STATUSES.map((status) => ({ labels: { status }, value: counts[status] })),
  };
}

async function jobFamily(catalog: Catalog, tenantId: string): Promise<MetricFamily> {
  const groups = await catalog.job.groupBy({ by: ["kind", "state"], where: { tenantId }, _count: true });
  const samples: Sample[] = groups
    .map((g) => ({ labels: { kind: g.kind.toLowerCase(), state: g.state.toLowerCase() }, value: g._count }))
    .sort((a, b) => `${a.labels.kind}/${a.labels.state}`.localeCompare(`${b.labels.kind}/${b.labels.state}`));
  return {
    name: "bulwark_jobs",
    help: "Jobs in the catalog by kind and state (combinations without jobs are omitted).",
    type: "gauge",
    samples,
  };
}

async function backupFamilies(catalog: Catalog, tenantId: string): Promise<MetricFamily[]> {
  const backups = await catalog.backup.aggregate({
    where: { tenantId, status: "AVAILABLE" },
    _count: true,
    _sum: { changedBytes: true },
  });
  // Gauges although named _total: they are sums over the catalog's restore points, so deleting or
  // pruning restore points lowers them, which a Prometheus counter must never do.
  return [
    {
      name: "bulwark_backups_total",
      help: "Available restore points.",
      type: "gauge",
      samples: [{ value: backups._count }],
    },
    {
      name: "bulwark_ingested_bytes_total",
      help: "Changed bytes the agents sent for the available restore points (sum of their changedBytes).",
      type: "gauge",
      samples: [{ value: Number(backups._sum.changedBytes ?? 0n) }],
    },
  ];
}

async function repositoryFamilies(catalog: Catalog, tenantId: string): Promise<MetricFamily[]> {
  const repos = await catalog.repository.findMany({
    where: { tenantId },
    orderBy: [{ name: "asc" }, { id: "asc" }],
    select: { id: true, name: true },
  });
  const usages = await Promise.all(repos.map((r) => repositoryUsage(catalog, r.id)));
  const stored: Sample[] = [];
  const dedup: Sample[] = [];
  repos.forEach((repo, i) => {
    const usage = usages[i];
    if (!usage) return;
    stored.push({ labels: { repository: repo.name }, value: usage.storedBytes });
    // No ratio without chunks: an absent sample, not a made-up 0 or 1.
    if (usage.dedupRatio !== null) dedup.push({ labels: { repository: repo.name }, value: usage.dedupRatio });
  });
  return [
    {
      name: "bulwark_repository_stored_bytes",
      help: "Bytes a repository's chunks take on storage (compressed and encrypted).",
      type: "gauge",
      samples: stored,
    },
    {
      name: "bulwark_repository_dedup_ratio",
      help: "Ingested bytes per unique plain chunk byte (as in GET /repositories; absent without chunks).",
      type: "gauge",
      samples: dedup,
    },
  ];
}

/**
 * Volumes whose newest available restore point is older than their policy allows (RPO status
 * "late", exactly as GET /agents/:id shows it). Active machines' present volumes only; a volume
 * never backed up ("none") is not counted, so enrolling a machine does not raise an alarm before
 * its first scheduled run.
 */
async function rpoFamily(catalog: Catalog, tenantId: string, now: Date): Promise<MetricFamily> {
  const agents = await catalog.agent.findMany({
    where: { tenantId, status: "ACTIVE" },
    select: { id: true },
  });
  const lastCaptured = new Map(
    (
      await catalog.backup.groupBy({
        by: ["volumeId"],
        where: { tenantId, status: "AVAILABLE" },
        _max: { capturedAt: true },
      })
    ).map((g) => [g.volumeId, g._max.capturedAt]),
  );
  let late = 0;
  for (const agent of agents) {
    const eff = await effectivePolicy(catalog, agent.id);
    if (!eff) continue;
    const volumes = await catalog.volume.findMany({
      where: { agentId: agent.id, goneAt: null },
      select: { id: true },
    });
    for (const v of volumes)
      if (rpoStatus(eff.policy, lastCaptured.get(v.id) ?? null, now) === "late") late += 1;
  }
  return {
    name: "bulwark_rpo_violations",
    help: "Volumes whose newest restore point is older than their policy's schedule allows.",
    type: "gauge",
    samples: [{ value: late }],
  };
}

async function queueFamily(queues: QueueDepths): Promise<MetricFamily> {
  const depths = await queues.jobCounts();
  const samples: Sample[] = [];
  for (const { queue, counts } of depths)
    for (const [state, value] of Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)))
      samples.push({ labels: { queue, state }, value });
  return {
    name: "bulwark_queue_jobs",
    help: "BullMQ jobs by queue and state (the whole installation's queues, not one tenant's).",
    type: "gauge",
    samples,
  };
}

export async function collectMetrics(opts: CollectOptions): Promise<MetricFamily[]> {
  const { catalog, tenantId, now } = opts;
  const [agents, jobs, backups, repositories, rpo, queues] = await Promise.all([
    agentFamily(catalog, tenantId),
    jobFamily(catalog, tenantId),
    backupFamilies(catalog, tenantId),
    repositoryFamilies(catalog, tenantId),
    rpoFamily(catalog, tenantId, now),
    opts.queues ? queueFamily(opts.queues) : Promise.resolve(null),
  ]);
  return [agents, jobs, ...backups, ...repositories, rpo, ...(queues ? [queues] : [])];
}
