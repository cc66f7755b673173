// The JSON body of an alert (docs/alerts.md, "The request"), version 1. Built from the catalog
// rows at the delivery's first attempt and stored with it, so every retry sends the same bytes.
// Only fields listed in the spec go out: never params beyond the window, never results, never secrets.

import type { Catalog } from "@bulwark/catalog";

export const PAYLOAD_VERSION = 1;

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

function windowTime(params: unknown, key: "windowOpensAt" | "windowClosesAt"): string | null {
  if (typeof params !== "object" || params === null) return null;
  const v = (params as Record<string, unknown>)[key];
  return typeof v === "string" && !Number.isNaN(Date.parse(v)) ? new Date(v).toISOString() : null;
}

function volumeIdOf(params: unknown): string | null {
  if (typeof params !== "object" || params === null) return null;
  const v = (params as Record<string, unknown>).volumeId;
  return typeof v === "string" && /^[0-9a-f-]{36}$/i.test(v) ? v : null;
}

/** `<publicUrl>/#/jobs/<id>`: the console's hash route of a job. */
export function jobLink(publicUrl: string | undefined, jobId: string): string | null {
  if (!publicUrl) return null;
  return `${publicUrl.replace(/\/+$/, "")}/#/jobs/${encodeURIComponent(jobId)}`;
}

export async function buildAlertBody(
  catalog: Catalog,
  delivery: { id: string; event: string; jobId: string | null; createdAt: Date; tenantId: string },
  publicUrl: string | undefined,
): Promise<string> {
  const tenant = await catalog.tenant.findUnique({
    where: { id: delivery.tenantId },
    select: { id: true, slug: true },
  });
  const job = delivery.jobId ? await catalog.job.findUnique({ where: { id: delivery.jobId } }) : null;
  const [agent, policy, volume] = await Promise.all([
    job?.agentId
      ? catalog.agent.findUnique({ where: { id: job.agentId }, select: { id: true, hostname: true } })
      : null,
    job?.policyId
      ? catalog.policy.findUnique({ where: { id: job.policyId }, select: { id: true, name: true } })
      : null,
    job && volumeIdOf(job.params)
      ? catalog.volume.findUnique({
          where: { id: volumeIdOf(job.params)! },
          select: { id: true, key: true, devicePath: true, mountPoint: true },
        })
      : null,
  ]);
  const body = {
    version: PAYLOAD_VERSION,
    id: delivery.id,
    event: delivery.event,
    createdAt: delivery.createdAt.toISOString(),
    tenant: tenant ? { id: tenant.id, slug: tenant.slug } : null,
    job: job
      ? {
          id: job.id,
          kind: job.kind,
          state: job.state,
          attempts: job.attempts,
          errorCode: job.errorCode,
          errorMessage: job.errorMessage,
          createdAt: iso(job.createdAt),
          scheduledFor: iso(job.scheduledFor),
          startedAt: iso(job.startedAt),
          finishedAt: iso(job.finishedAt),
          windowOpensAt: windowTime(job.params, "windowOpensAt"),
          windowClosesAt: windowTime(job.params, "windowClosesAt"),
        }
      : null,
    agent: agent ?? null,
    volume: volume ?? null,
    policy: policy ?? null,
    links: { job: job ? jobLink(publicUrl, job.id) : null },
  };
  return JSON.stringify(body);
}
