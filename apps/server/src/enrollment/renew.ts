import { BulwarkError } from "@bulwark/errors";
import type { RenewRequest, RenewResponse } from "@bulwark/protocol";
import { writeAudit } from "../audit/write.js";
import type { AgentIdentity } from "../grpc/identity.js";
import type { EnrollmentContext } from "./context.js";
import { verifiedCsrPublicKey } from "./csr.js";

// IdentityService.Renew: an agent, authenticated by its current certificate (so a revoked or
// expired one cannot renew), trades a CSR for a new key pair for a new certificate. The old
// certificate stays valid until its own notAfter, so a lost response costs nothing.

/**
 * Unexpired, unrevoked certificates one agent may hold. Normally one or two (renewal at two
 * thirds overlaps the old one); a few more absorb lost responses. More means a looping or hostile
 * agent, which must not be able to grow the table without bound.
 */
export const MAX_LIVE_CERTIFICATES_PER_AGENT = 5;

export async function renewCertificate(
  ctx: EnrollmentContext,
  agent: AgentIdentity,
  req: RenewRequest,
): Promise<RenewResponse> {
  const publicKey = await verifiedCsrPublicKey(req.csrPem);
  const now = ctx.now();
  return ctx.catalog.$transaction(async (tx) => {
    // Serializes concurrent renewals of one agent, so the live-certificate bound holds.
    await tx.$executeRaw`SELECT id FROM agents WHERE id = ${agent.agentId}::uuid FOR UPDATE`;
    const live = await tx.agentCertificate.count({
      where: { agentId: agent.agentId, revokedAt: null, notAfter: { gt: now } },
    });
    if (live >= MAX_LIVE_CERTIFICATES_PER_AGENT) {
      throw new BulwarkError(
        "BULWARK_ENROLL_BUSY",
        `this agent already holds ${live} valid certificates; renew again once older ones expire`,
        { details: { agentId: agent.agentId, live } },
      );
    }
    const issued = await ctx.ca.issueClientCertificate(publicKey, agent.agentId, now);
    await tx.agentCertificate.create({
      data: {
        serial: issued.serial,
        agentId: agent.agentId,
        caId: ctx.ca.id,
        fingerprint: issued.fingerprint,
        issuedAt: now,
        notAfter: issued.notAfter,
      },
    });
    await writeAudit(tx, {
      tenantId: agent.tenantId,
      actorType: "AGENT",
      actorId: agent.agentId,
      action: "agent.certificate.renew",
      outcome: "SUCCESS",
      targetType: "agent",
      targetId: agent.agentId,
      details: {
        previousSerial: agent.certificateSerial,
        serial: issued.serial,
        notAfter: issued.notAfter.toISOString(),
      },
      at: now,
    });
    return {
      certificate: {
        certificatePem: issued.pem,
        caChainPem: ctx.serverTrustPem,
        notAfter: issued.notAfter,
        renewAfter: issued.renewAfter,
      },
    };
  });
}
