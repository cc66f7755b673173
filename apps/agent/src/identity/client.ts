import { X509Certificate } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";
import { AGENT_CHANNEL_OPTIONS, type IssuedCertificate, protocolMetadata } from "@bulwark/protocol";
import type { Client } from "@grpc/grpc-js";
import { asBulwarkError } from "../upload/transport.js";

// Shared by enroll and renew: a promise over one unary call, and the checks on what came back.

/** Enrollment and renewal are a signature and a row; a server that takes this long is not answering. */
export const IDENTITY_CALL_DEADLINE_MS = 30_000;

export type ChannelOptions = Record<string, string | number>;

export function channelOptions(extra: ChannelOptions = {}): ChannelOptions {
  return { ...AGENT_CHANNEL_OPTIONS, ...extra };
}

export function unaryCall<Req, Res>(client: Client, method: unknown, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    (method as (...args: unknown[]) => unknown).call(
      client,
      req,
      protocolMetadata(),
      { deadline: new Date(Date.now() + IDENTITY_CALL_DEADLINE_MS) },
      (err: unknown, res: Res) => (err ? reject(asBulwarkError(err)) : resolve(res)),
    );
  });
}

function responseInvalid(message: string): BulwarkError {
  return new BulwarkError("BULWARK_ENROLL_RESPONSE_INVALID", message);
}

/**
 * Checks that an issued certificate is for us: parses, names `agentId` as its subject CN, and
 * certifies the public key we generated (so a confused or hostile server cannot hand us a
 * certificate we could not use, or someone else's).
 */
export function checkIssued(
  issued: IssuedCertificate | undefined,
  agentId: string,
  spki: Buffer,
): { certPem: string; caPem: string; notAfter: Date; renewAfter: Date } {
  if (!issued?.certificatePem || !issued.notAfter || !issued.renewAfter) {
    throw responseInvalid("the server's answer has no certificate");
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(issued.certificatePem);
  } catch {
    throw responseInvalid("the issued certificate does not parse");
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
  if (cn !== agentId) throw responseInvalid(`the issued certificate names ${cn ?? "nobody"}, not ${agentId}`);
  const certSpki = cert.publicKey.export({ type: "spki", format: "der" });
  if (!certSpki.equals(spki))
    throw responseInvalid("the issued certificate is not for the key this agent generated");
  return {
    certPem: issued.certificatePem,
    caPem: issued.caChainPem.join(""),
    notAfter: issued.notAfter,
    renewAfter: issued.renewAfter,
  };
}
