import { readFileSync } from "node:fs";
import type { ServerConfig } from "@bulwark/config";
import { serverEnv } from "@bulwark/config";
import { BulwarkError } from "@bulwark/errors";
import { ServerCredentials } from "@grpc/grpc-js";

// TLS material of the agent listener, read from the files the configuration names, until
// enrollment (issue 5) keeps the CA in the catalog. The listener requires a client certificate
// signed by the agent CA at the TLS layer: a connection without one never reaches a handler.

export interface AgentListenerTls {
  certChain: Buffer;
  privateKey: Buffer;
  agentCa: Buffer;
}

type TlsKey = "grpcTlsCertFile" | "grpcTlsKeyFile" | "agentCaFile";

function readConfigured(config: ServerConfig, key: TlsKey): Buffer {
  const path = config[key]!;
  try {
    return readFileSync(path);
  } catch (err) {
    throw new BulwarkError(
      "BULWARK_CONFIG_INVALID",
      `${serverEnv[key]} / ${key}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { details: { key, path } },
    );
  }
}

/** The TLS files, or undefined when none is configured (no agent listener). */
export function loadAgentListenerTls(config: ServerConfig): AgentListenerTls | undefined {
  if (config.grpcTlsCertFile === undefined) return undefined;
  return {
    certChain: readConfigured(config, "grpcTlsCertFile"),
    privateKey: readConfigured(config, "grpcTlsKeyFile"),
    agentCa: readConfigured(config, "agentCaFile"),
  };
}

/** Mutual TLS: present our certificate, require and verify the client's against the agent CA. */
export function agentListenerCredentials(tls: AgentListenerTls): ServerCredentials {
  return ServerCredentials.createSsl(
    tls.agentCa,
    [{ cert_chain: tls.certChain, private_key: tls.privateKey }],
    true, // checkClientCertificate
  );
}
