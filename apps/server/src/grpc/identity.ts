import { createHash } from "node:crypto";
import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import { type CallWithAuthContext, peerCertificate } from "@bulwark/protocol";

// Who is calling: the verified client certificate of the call (never a message field, never the
// peer address) → its AgentCertificate row by SHA-256 fingerprint → an ACTIVE agent. Resolved on
// every call, so a revocation takes effect on the next call, not the next connection.

export interface AgentIdentity {
  agentId: string;
  tenantId: string;
  /** Serial of the certificate the call used, for logs. */
  certificateSerial: string;
}

export interface AgentIdentityResolver {
  resolve(call: CallWithAuthContext): Promise<AgentIdentity>;
}

/** How AgentCertificate.fingerprint is written: SHA-256 of the DER certificate, lowercase hex, no colons. */
export function certificateFingerprint(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("hex");
}

export class CatalogIdentityResolver implements AgentIdentityResolver {
  constructor(
    private readonly catalog: Catalog,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async resolve(call: CallWithAuthContext): Promise<AgentIdentity> {
    const cert = peerCertificate(call);
    if (!cert) {
      throw new BulwarkError(
        "BULWARK_INGEST_UNAUTHENTICATED",
        "the call carries no verified client certificate",
      );
    }
    const fingerprint = certificateFingerprint(cert.raw);
    // Node's own notation (PeerCertificate.fingerprint256, "AB:CD:…") is accepted too, so a row
    // written from a PeerCertificate or X509Certificate matches without conversion.
    const nodeNotation = fingerprint.toUpperCase().replace(/(..)(?!$)/g, "$1:");
    const row = await this.catalog.agentCertificate.findFirst({
      where: { fingerprint: { in: [fingerprint, nodeNotation] } },
      include: { agent: { select: { id: true, tenantId: true, status: true, revokedAt: true } } },
    });
    if (!row) {
      // Signed by our CA but never issued by this catalog (or deleted): not an identity we know.
      throw new BulwarkError(
        "BULWARK_INGEST_UNAUTHENTICATED",
        "the client certificate is not known to this server",
        {
          details: { fingerprint },
        },
      );
    }
    const now = this.now();
    const why =
      row.revokedAt !== null
        ? "the client certificate is revoked"
        : row.notAfter <= now
          ? "the client certificate has expired"
          : row.agent.status !== "ACTIVE" || row.agent.revokedAt !== null
            ? "the agent is revoked"
            : null;
    if (why) {
      throw new BulwarkError("BULWARK_INGEST_AGENT_REVOKED", why, {
        details: { agentId: row.agentId, serial: row.serial },
      });
    }
    return { agentId: row.agent.id, tenantId: row.agent.tenantId, certificateSerial: row.serial };
  }
}
