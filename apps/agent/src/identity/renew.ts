import { readFile } from "node:fs/promises";
import { IdentityServiceClient, type RenewResponse } from "@bulwark/protocol";
import { mtlsCredentials } from "../upload/transport.js";
import { type ChannelOptions, channelOptions, checkIssued, unaryCall } from "./client.js";
import { type AgentIdentity, requireAgentIdentity, saveAgentIdentity } from "./store.js";
import { newKeyAndCsr } from "./x509.js";

// `bulwark-agent renew` and the run loop's periodic check: once renewAfter has passed, ask
// IdentityService.Renew (authenticated by the current certificate) for a certificate on a new
// key pair, and swap the identity files atomically. The old certificate stays valid until its
// own expiry, so a failure here is retried later at no cost.

export interface RenewResult {
  renewed: boolean;
  identity: AgentIdentity;
}

export async function renewIfDue(
  stateDir: string,
  now: Date,
  opts: { force?: boolean; channel?: ChannelOptions } = {},
): Promise<RenewResult> {
  const identity = await requireAgentIdentity(stateDir);
  if (!opts.force && now < new Date(identity.renewAfter)) return { renewed: false, identity };
  const { keyPem, csrPem, spki } = await newKeyAndCsr(identity.agentId);
  const client = new IdentityServiceClient(
    identity.agentAddress,
    await mtlsCredentials(identity.tls),
    channelOptions(opts.channel),
  );
  let res: RenewResponse;
  try {
    res = await unaryCall(client, client.renew, { csrPem });
  } finally {
    client.close();
  }
  const issued = checkIssued(res.certificate, identity.agentId, spki);
  const saved = await saveAgentIdentity(stateDir, {
    record: {
      version: 1,
      agentId: identity.agentId,
      agentAddress: identity.agentAddress,
      enrollAddress: identity.enrollAddress,
      caFingerprint: identity.caFingerprint,
      notAfter: issued.notAfter.toISOString(),
      renewAfter: issued.renewAfter.toISOString(),
    },
    caPem: issued.caPem || (await readFile(identity.tls.caPath, "utf8")),
    certPem: issued.certPem,
    keyPem,
  });
  return { renewed: true, identity: saved };
}
