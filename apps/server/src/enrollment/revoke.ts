import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import { z } from "zod";
import { writeAudit } from "../audit/write.js";
import type { Actor } from "./tokens.js";

// Revoking an agent (admin action): the agent becomes REVOKED and every certificate it holds is
// marked revoked, in one transaction. CatalogIdentityResolver checks both on every call, so the
// next call on the agent listener fails with BULWARK_INGEST_AGENT_REVOKED; `onRevoked` lets the
// control stream close an open stream right away (Disconnect{REVOKED}).

export interface RevokeAgentOptions {
  /** When given, the agent must belong to this tenant (REST callers always pass it). */
  tenantId?: string;
  actor?: Actor;
  reason?: string;
  now?: () => Date;
  /** Called after the revocation committed, e.g. to close the agent's control stream. */
  onRevoked?: (agentId: string) => void | Promise<void>;
}

export interface RevokedAgent {
  agentId: string;
  tenantId: string;
  revokedAt: Date;
  /** Certificates this call marked revoked (0 when the agent was already revoked). */
  certificatesRevoked: number;
  alreadyRevoked: boolean;
}

export async function revokeAgent(
  catalog: Catalog,
  agentId: string,
  opts: RevokeAgentOptions = {},
): Promise<RevokedAgent> {
  const notFound = () =>
    new BulwarkError("BULWARK_ENROLL_AGENT_NOT_FOUND", `no agent ${agentId}`, { details: { agentId } });
  if (!z.uuid().safeParse(agentId).success) throw notFound();
  const now = (opts.now ?? (() => new Date()))();
  const actor = opts.actor ?? { type: "SYSTEM" as const };
  const result = await catalog.$transaction(async (tx) => {
    const agent = await tx.agent.findFirst({
      where: { id: agentId, ...(opts.tenantId ? { tenantId: opts.tenantId } : {}) },
    });
    if (!agent) throw notFound();
    const certificates = await tx.agentCertificate.updateMany({
      where: { agentId, revokedAt: null },
      data: { revokedAt: now },
    });
    if (agent.status === "REVOKED" && certificates.count === 0) {
      return {
        agentId,
        tenantId: agent.tenantId,
        revokedAt: agent.revokedAt ?? now,
        certificatesRevoked: 0,
        alreadyRevoked: true,
      };
    }
    await tx.agent.update({ where: { id: agentId }, data: { status: "REVOKED", revokedAt: now } });
    await writeAudit(tx, {
      tenantId: agent.tenantId,
      actorType: actor.type,
      actorId: actor.id ?? null,
      actorName: actor.name ?? null,
      action: "agent.revoke",
      outcome: "SUCCESS",
      targetType: "agent",
      targetId: agentId,
      details: { certificatesRevoked: certificates.count, ...(opts.reason ? { reason: opts.reason } : {}) },
      at: now,
    });
    return {
      agentId,
      tenantId: agent.tenantId,
      revokedAt: now,
      certificatesRevoked: certificates.count,
      alreadyRevoked: false,
    };
  });
  await opts.onRevoked?.(agentId);
  return result;
}
