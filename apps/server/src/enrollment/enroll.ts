import { randomUUID } from "node:crypto";
import { Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { EnrollRequest, EnrollResponse } from "@bulwark/protocol";
import { writeAudit } from "../audit/write.js";
import type { EnrollmentContext } from "./context.js";
import { verifiedCsrPublicKey } from "./csr.js";
import { validateFacts } from "./facts.js";
import { hashEnrollmentToken, TOKEN_PATTERN } from "./token.js";

// EnrollmentService.Enroll (docs/security.md, "Enrollment"): a single-use token and a CSR become an
// agent row and a client certificate. Everything that can be checked without the database is
// checked first; then one transaction consumes the token, applies the identity rule, creates (or
// re-activates) the agent, issues and records the certificate and writes the audit row. Any
// refusal inside rolls the whole transaction back, so a refused enrollment does not burn the token.

type TokenRow = {
  id: string;
  tenantId: string;
  usedAt: Date | null;
  revokedAt: Date | null;
  expiresAt: Date;
};

function tokenRefusal(row: TokenRow | null, now: Date): BulwarkError {
  if (!row)
    return new BulwarkError(
      "BULWARK_ENROLL_TOKEN_INVALID",
      "the enrollment token is not known to this server",
    );
  const details = { tokenId: row.id };
  if (row.revokedAt)
    return new BulwarkError("BULWARK_ENROLL_TOKEN_REVOKED", "the enrollment token was revoked", { details });
  if (row.usedAt)
    return new BulwarkError("BULWARK_ENROLL_TOKEN_USED", "the enrollment token was already used", {
      details,
    });
  if (row.expiresAt <= now)
    return new BulwarkError("BULWARK_ENROLL_TOKEN_EXPIRED", "the enrollment token has expired", { details });
  // Valid now but not consumable a moment ago: another enrollment took it in between.
  return new BulwarkError("BULWARK_ENROLL_TOKEN_USED", "the enrollment token was already used", { details });
}

function isUniqueViolation(err: unknown): boolean {
  return err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2002";
}

export async function enrollAgent(
  ctx: EnrollmentContext,
  req: EnrollRequest,
  meta: { ip?: string } = {},
): Promise<EnrollResponse> {
  if (typeof req.token !== "string" || !TOKEN_PATTERN.test(req.token)) {
    throw new BulwarkError("BULWARK_ENROLL_TOKEN_INVALID", "the enrollment token is malformed");
  }
  const facts = validateFacts(req.facts);
  const publicKey = await verifiedCsrPublicKey(req.csrPem);
  const tokenHash = hashEnrollmentToken(req.token);
  const now = ctx.now();
  let known: TokenRow | null = null;
  try {
    return await ctx.catalog.$transaction(async (tx) => {
      // The conditional update is the atomic consumption: of two concurrent enrollments with one
      // token, the second blocks on the row lock and then matches nothing.
      const consumed = await tx.enrollmentToken.updateMany({
        where: { tokenHash, usedAt: null, revokedAt: null, expiresAt: { gt: now } },
        data: { usedAt: now },
      });
      const token = await tx.enrollmentToken.findUnique({ where: { tokenHash } });
      known = token;
      if (consumed.count !== 1 || !token) throw tokenRefusal(token, now);

      const existing = await tx.agent.findUnique({
        where: { tenantId_machineId: { tenantId: token.tenantId, machineId: facts.machineId } },
      });
      if (existing?.status === "ACTIVE") {
        throw new BulwarkError(
          "BULWARK_ENROLL_IDENTITY_EXISTS",
          `an active agent with machine ID ${facts.machineId} is already enrolled (${existing.id}); revoke it before enrolling this machine again`,
          { details: { agentId: existing.id, machineId: facts.machineId } },
        );
      }
      const agentFields = {
        hostname: facts.hostname,
        os: facts.os,
        osVersion: facts.osVersion || null,
        arch: facts.arch || null,
        agentVersion: facts.agentVersion,
      };
      // A revoked machine enrolled again with a new token keeps its agent record and restore
      // points; its old certificates stay revoked.
      const agent = existing
        ? await tx.agent.update({
            where: { id: existing.id },
            data: {
              ...agentFields,
              status: "ACTIVE",
              revokedAt: null,
              enrolledAt: now,
              tags: [...new Set([...existing.tags, ...token.tags])],
            },
          })
        : await tx.agent.create({
            data: {
              id: randomUUID(),
              tenantId: token.tenantId,
              machineId: facts.machineId,
              ...agentFields,
              tags: token.tags,
              enrolledAt: now,
            },
          });
      if (token.groupId) {
        await tx.agentGroup.createMany({
          data: [{ agentId: agent.id, groupId: token.groupId }],
          skipDuplicates: true,
        });
      }
      const issued = await ctx.ca.issueClientCertificate(publicKey, agent.id, now);
      await tx.agentCertificate.create({
        data: {
          serial: issued.serial,
          agentId: agent.id,
          caId: ctx.ca.id,
          fingerprint: issued.fingerprint,
          issuedAt: now,
          notAfter: issued.notAfter,
        },
      });
      await tx.enrollmentToken.update({ where: { id: token.id }, data: { usedByAgent: agent.id } });
      await writeAudit(tx, {
        tenantId: token.tenantId,
        actorType: "AGENT",
        actorId: agent.id,
        actorName: facts.hostname,
        action: "agent.enroll",
        outcome: "SUCCESS",
        targetType: "agent",
        targetId: agent.id,
        ip: meta.ip ?? null,
        details: {
          tokenId: token.id,
          machineId: facts.machineId,
          serial: issued.serial,
          notAfter: issued.notAfter.toISOString(),
          reenrolled: existing !== null,
        },
        at: now,
      });
      return {
        agentId: agent.id,
        certificate: {
          certificatePem: issued.pem,
          caChainPem: ctx.serverTrustPem,
          notAfter: issued.notAfter,
          renewAfter: issued.renewAfter,
        },
      };
    });
  } catch (err) {
    const refusal = isUniqueViolation(err)
      ? new BulwarkError(
          "BULWARK_ENROLL_IDENTITY_EXISTS",
          `machine ID ${facts.machineId} was enrolled by a concurrent request`,
          { details: { machineId: facts.machineId } },
        )
      : err;
    await auditRefusal(ctx, known, refusal, facts.machineId, meta.ip, now);
    throw refusal;
  }
}

/** A refused enrollment with a token we know is recorded in its tenant's audit log (outside the rolled-back transaction). */
async function auditRefusal(
  ctx: EnrollmentContext,
  token: TokenRow | null,
  err: unknown,
  machineId: string,
  ip: string | undefined,
  now: Date,
): Promise<void> {
  if (!token || !(err instanceof BulwarkError)) return;
  try {
    await writeAudit(ctx.catalog, {
      tenantId: token.tenantId,
      actorType: "AGENT",
      action: "agent.enroll",
      targetType: "enrollment_token",
      targetId: token.id,
      outcome: "DENIED",
      ip: ip ?? null,
      details: { code: err.code, machineId },
      at: now,
    });
  } catch (auditErr) {
    ctx.log.error({ err: auditErr }, "could not write the audit row of a refused enrollment");
  }
}
