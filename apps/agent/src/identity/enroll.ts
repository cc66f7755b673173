import { timingSafeEqual } from "node:crypto";
import { hostname } from "node:os";
import { BulwarkError } from "@bulwark/errors";
import {
  type AgentFacts,
  EnrollmentServiceClient,
  type EnrollResponse,
  type GetServerCaResponse,
} from "@bulwark/protocol";
import { type ChannelOptions, channelOptions, checkIssued, unaryCall } from "./client.js";
import { collectFacts } from "./facts.js";
import { type AgentIdentity, loadAgentIdentity, saveAgentIdentity } from "./store.js";
import { sslCredentials } from "./tls.js";
import type { TokenFile } from "./token-file.js";
import { certificateSha256, newKeyAndCsr } from "./x509.js";

// `bulwark-agent enroll` (docs/protocol.md §2, docs/security.md): fetch the server CA over TLS
// without verification, accept it only if it matches the pin from the token file, then enroll
// over a channel that trusts exactly that CA, and store the identity. Nothing secret is sent
// before the pin matched: a wrong pin ends here, with the token unspent.

export interface EnrollOptions {
  stateDir: string;
  token: TokenFile;
  /** host:port of the enroll listener; default the token file's enrollAddress. */
  server?: string;
  /** Overrides of the collected facts (tests enroll several "machines" from one host). */
  facts?: Partial<AgentFacts>;
  /** Extra channel options (tests: target name override). */
  channel?: ChannelOptions;
}

function pemCertificates(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\s*/g) ?? [];
}

/** Step 1: the server's CA, checked against the pin (only that certificate is returned). */
export async function fetchPinnedCa(target: string, pinHex: string, extra?: ChannelOptions): Promise<string> {
  // No verification on this one call: nothing secret is sent and the answer is checked by hash.
  const insecure = sslCredentials(null, null, null, {
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
  });
  const client = new EnrollmentServiceClient(target, insecure, channelOptions(extra));
  try {
    const res = await unaryCall<object, GetServerCaResponse>(client, client.getServerCa, {});
    const certs = pemCertificates(res.caCertificatePem ?? "");
    const first = certs[0];
    let actual: string | undefined;
    try {
      actual = first ? certificateSha256(first) : undefined;
    } catch {
      actual = undefined;
    }
    const pin = Buffer.from(pinHex, "hex");
    if (!actual || !timingSafeEqual(Buffer.from(actual, "hex"), pin)) {
      throw new BulwarkError(
        "BULWARK_ENROLL_CA_PIN_MISMATCH",
        `the server at ${target} presents CA ${actual ?? "(none)"}, the token file pins ${pinHex}; not enrolling`,
        { details: { target, expected: pinHex, actual: actual ?? null } },
      );
    }
    // Only the pinned certificate: anything else in an unverified answer could be an attacker's
    // CA appended after the real one. The full chain arrives later over the verified channel.
    return first!;
  } finally {
    client.close();
  }
}

export async function enroll(opts: EnrollOptions): Promise<AgentIdentity> {
  const existing = await loadAgentIdentity(opts.stateDir);
  if (existing) {
    throw new BulwarkError(
      "BULWARK_ENROLL_IDENTITY_EXISTS",
      `this agent is already enrolled as ${existing.agentId} (${existing.dir}); remove that directory to enroll again`,
      { details: { agentId: existing.agentId } },
    );
  }
  const target = opts.server ?? opts.token.enrollAddress;
  const caPem = await fetchPinnedCa(target, opts.token.caSha256, opts.channel);
  const facts = await collectFacts(opts.facts);
  const { keyPem, csrPem, spki } = await newKeyAndCsr(facts.hostname || hostname());
  const client = new EnrollmentServiceClient(
    target,
    sslCredentials(Buffer.from(caPem)),
    channelOptions(opts.channel),
  );
  let res: EnrollResponse;
  try {
    res = await unaryCall(client, client.enroll, { token: opts.token.token, csrPem, facts });
  } finally {
    client.close();
  }
  const issued = checkIssued(res.certificate, res.agentId, spki);
  return saveAgentIdentity(opts.stateDir, {
    record: {
      version: 1,
      agentId: res.agentId,
      agentAddress: opts.token.agentAddress,
      enrollAddress: target,
      caFingerprint: opts.token.caSha256,
      notAfter: issued.notAfter.toISOString(),
      renewAfter: issued.renewAfter.toISOString(),
    },
    caPem: issued.caPem || caPem,
    certPem: issued.certPem,
    keyPem,
  });
}
