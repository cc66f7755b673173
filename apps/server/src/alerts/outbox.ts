// The alert outbox sweep (docs/alerts.md, "Delivery"). Reads the jobs table (the job system is not
// changed) and inserts one PENDING delivery per enabled endpoint × final job × subscribed event
// that has none yet. One statement with ON CONFLICT on (endpointId, jobId, event): any number of
// nodes sweeping at once, or again after a crash, make each delivery exactly once.

import type { Catalog } from "@bulwark/catalog";

/** Job kind and final state → event, the one mapping SQL and docs share. */
export const JOB_EVENTS = [
  { kind: "BACKUP", state: "FAILED", event: "backup.failed" },
  { kind: "BACKUP", state: "MISSED", event: "backup.missed" },
  { kind: "RESTORE", state: "FAILED", event: "restore.failed" },
  { kind: "VERIFY", state: "FAILED", event: "verify.failed" },
] as const;

/** Inserts the missing deliveries; returns how many were new. */
export async function recordAlerts(catalog: Catalog, now: Date): Promise<number> {
  // Only final jobs that finished after the endpoint was created: a new endpoint gets no history.
  return catalog.$executeRaw`
    INSERT INTO "webhook_deliveries" ("id", "endpointId", "jobId", "event", "state", "createdAt")
    SELECT gen_random_uuid(), e."id", j."id", m."event", 'PENDING', ${now}
    FROM "jobs" j
    JOIN (VALUES
      ('BACKUP', 'FAILED', 'backup.failed'),
      ('BACKUP', 'MISSED', 'backup.missed'),
      ('RESTORE', 'FAILED', 'restore.failed'),
      ('VERIFY', 'FAILED', 'verify.failed')
    ) AS m("kind", "state", "event") ON j."kind"::text = m."kind" AND j."state"::text = m."state"
    JOIN "webhook_endpoints" e
      ON e."tenantId" = j."tenantId" AND e."enabled" AND m."event" = ANY(e."events")
    WHERE j."state" IN ('FAILED', 'MISSED')
      AND j."finishedAt" IS NOT NULL
      AND j."finishedAt" >= e."createdAt"
      AND NOT EXISTS (
        SELECT 1 FROM "webhook_deliveries" d
        WHERE d."endpointId" = e."id" AND d."jobId" = j."id" AND d."event" = m."event"
      )
    ON CONFLICT ("endpointId", "jobId", "event") DO NOTHING`;
}

/** Job alerts still to deliver, oldest first (test pings are sent at once and never swept). */
export async function pendingDeliveries(catalog: Catalog, limit: number): Promise<string[]> {
  const rows = await catalog.webhookDelivery.findMany({
    where: { state: "PENDING", jobId: { not: null } },
    orderBy: [{ createdAt: "asc" }, { id: "asc" }],
    take: limit,
    select: { id: true },
  });
  return rows.map((r) => r.id);
}
