import { createHash, randomBytes } from "node:crypto";

// Enrollment tokens and the token file (docs/security.md, "Enrollment tokens"). A token is
// `bwe_` + 32 random bytes in base64url: the prefix makes a leaked one easy to recognise (and to
// scan for), the 256 bits make guessing pointless. Only its SHA-256 is stored.

export const TOKEN_PREFIX = "bwe_";
const TOKEN_BYTES = 32;
/** The exact shape of a token; anything else is refused before a database lookup. */
export const TOKEN_PATTERN = /^bwe_[A-Za-z0-9_-]{43}$/;

export function newEnrollmentToken(): string {
  return `${TOKEN_PREFIX}${randomBytes(TOKEN_BYTES).toString("base64url")}`;
}

/** What EnrollmentToken.tokenHash holds: SHA-256 of the token string, lowercase hex. */
export function hashEnrollmentToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** Where an agent reaches this server and what it pins; part of every token file. */
export interface EnrollmentEndpoint {
  /** host:port of the enroll listener (TLS, no client certificate). */
  enrollAddress: string;
  /** host:port of the agent listener (mTLS), where the agent goes once enrolled. */
  agentAddress: string;
  /** SHA-256 of the DER of the CA certificate agents must trust for the server, lowercase hex. */
  caFingerprint: string;
}

export const TOKEN_FILE_KIND = "bulwark-enrollment-token";
export const TOKEN_FILE_VERSION = 1;

/** The token file an admin hands to an agent: one JSON object (docs/security.md, "Token file"). */
export function tokenFileText(endpoint: EnrollmentEndpoint, token: string, expiresAt: Date): string {
  return `${JSON.stringify(
    {
      kind: TOKEN_FILE_KIND,
      version: TOKEN_FILE_VERSION,
      enrollAddress: endpoint.enrollAddress,
      agentAddress: endpoint.agentAddress,
      caSha256: endpoint.caFingerprint,
      token,
      expiresAt: expiresAt.toISOString(),
    },
    null,
    2,
  )}\n`;
}
