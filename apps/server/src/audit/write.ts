// One way to append to the audit log. The table is append-only (a trigger refuses UPDATE and
// DELETE), so this is the only write there is. `details` must never carry a secret: no passwords,
// tokens or keys, only what a reviewer needs to understand the action.

import type { ActorType, AuditOutcome, Catalog, Prisma } from "@bulwark/catalog";

export interface AuditEventInput {
  tenantId: string;
  actorType: ActorType;
  actorId?: string | null;
  actorName?: string | null;
  /** Dotted verb, e.g. "auth.login", "policy.update", "agent.revoke". */
  action: string;
  targetType?: string | null;
  targetId?: string | null;
  outcome: AuditOutcome;
  ip?: string | null;
  details?: Prisma.InputJsonValue;
  /** Defaults to the database's now(); tests with an injected clock pass their time. */
  at?: Date;
}

/** The catalog or a transaction on it, so an audit row can commit together with its change. */
export type AuditWriter = Pick<Catalog, "auditEvent"> | Prisma.TransactionClient;

export async function writeAudit(catalog: AuditWriter, event: AuditEventInput): Promise<void> {
  await catalog.auditEvent.create({
    data: {
      tenantId: event.tenantId,
      actorType: event.actorType,
      actorId: event.actorId ?? null,
      actorName: event.actorName ?? null,
      action: event.action,
      targetType: event.targetType ?? null,
      targetId: event.targetId ?? null,
      outcome: event.outcome,
      ip: event.ip ?? null,
      details: event.details,
      ...(event.at ? { at: event.at } : {}),
    },
  });
}
