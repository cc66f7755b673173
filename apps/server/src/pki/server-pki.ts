import { X509Certificate } from "node:crypto";
import { hostname as osHostname } from "node:os";
import type { Catalog } from "@bulwark/catalog";
import type { ServerConfig } from "@bulwark/config";
import type { EnrollmentEndpoint } from "../enrollment/token.js";
import { type CaLifetimes, derFingerprint, ensureCertificateAuthority, type ServerCa } from "./ca.js";
import { defaultCaKeyFile, loadOrCreateCaKey } from "./key-file.js";

// Everything TLS the server needs at start, from the catalog CA (created on first start):
// the server certificate for both gRPC listeners, the roots that verify agent certificates, and
// what agents pin. With BULWARK_GRPC_TLS_CERT_FILE / KEY_FILE / AGENT_CA_FILE set, the server
// presents that certificate instead and agents trust the configured CA for it; the agent
// listener then accepts client certificates of both the configured CA and the catalog CA, so
// agents enrolled here work either way.

/** PEM files read by loadAgentListenerTls (apps/server/src/grpc/tls.ts). */
export interface FileTls {
  certChain: Buffer;
  privateKey: Buffer;
  agentCa: Buffer;
}

export interface ServerPki {
  ca: ServerCa;
  caCreated: boolean;
  caKeyFile: string;
  caKeyFileCreated: boolean;
  /** The certificate chain and key both gRPC listeners present. */
  certChain: Buffer;
  privateKey: Buffer;
  /** Roots the agent listener verifies client certificates against. */
  clientRoots: Buffer;
  /** What an agent trusts for the server (GetServerCa, IssuedCertificate.ca_chain_pem), PEM each. */
  serverTrustPem: string[];
  /** Addresses and CA pin that go into token files. */
  endpoint: EnrollmentEndpoint;
  /** Where the server certificate came from. */
  source: "catalog" | "files";
}

const WILDCARDS = new Set(["0.0.0.0", "::", "[::]", ""]);

/** host:port → host (IPv6 in brackets kept bare). */
export function hostOf(address: string): string {
  const m = /^\[([^\]]+)\]:\d+$/.exec(address) ?? /^([^:]+):\d+$/.exec(address);
  return m?.[1] ?? address;
}

function advertised(host: string, port: number): string {
  const name = WILDCARDS.has(host) ? osHostname() : host;
  return `${name.includes(":") ? `[${name}]` : name}:${port}`;
}

/** The enroll listener's host: its own key, or the agent listener's host. */
export function enrollHost(config: ServerConfig): string {
  return config.enrollHost ?? config.grpcHost;
}

export function enrollmentEndpointAddresses(config: ServerConfig): {
  enrollAddress: string;
  agentAddress: string;
} {
  return {
    enrollAddress: config.advertisedEnrollAddress ?? advertised(enrollHost(config), config.enrollPort),
    agentAddress: config.advertisedAgentAddress ?? advertised(config.grpcHost, config.grpcPort),
  };
}

/** The names the server certificate is issued for: listener hosts, advertised hosts, extra SANs. */
export function serverCertificateNames(config: ServerConfig): string[] {
  const { enrollAddress, agentAddress } = enrollmentEndpointAddresses(config);
  const names = [
    ...config.grpcTlsSans,
    hostOf(agentAddress),
    hostOf(enrollAddress),
    config.grpcHost,
    enrollHost(config),
  ].filter((n) => !WILDCARDS.has(n));
  return [...new Set(names)];
}

/** Splits a PEM bundle into its certificates. */
export function pemCertificates(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\s*/g) ?? [];
}

export async function prepareServerPki(opts: {
  config: ServerConfig;
  catalog: Catalog;
  fileTls?: FileTls;
  now?: () => Date;
  lifetimes?: CaLifetimes;
}): Promise<ServerPki> {
  const now = opts.now ?? (() => new Date());
  const caKeyFile = opts.config.caKeyFile ?? defaultCaKeyFile(opts.config.dataDir);
  const { key, created: caKeyFileCreated } = await loadOrCreateCaKey(caKeyFile);
  const { ca, created: caCreated } = await ensureCertificateAuthority(opts.catalog, {
    caKey: key,
    now,
    ...(opts.lifetimes ? { lifetimes: opts.lifetimes } : {}),
  });
  key.fill(0);
  const addresses = enrollmentEndpointAddresses(opts.config);
  if (opts.fileTls) {
    const configured = pemCertificates(opts.fileTls.agentCa.toString("utf8"));
    for (const pem of configured) new X509Certificate(pem); // fails start-up on a damaged file
    return {
      ca,
      caCreated,
      caKeyFile,
      caKeyFileCreated,
      certChain: opts.fileTls.certChain,
      privateKey: opts.fileTls.privateKey,
      clientRoots: Buffer.from([...configured, ca.certPem].join("\n")),
      serverTrustPem: configured,
      endpoint: {
        ...addresses,
        caFingerprint: configured[0] ? derFingerprint(configured[0]) : ca.fingerprint,
      },
      source: "files",
    };
  }
  const server = await ca.issueServerCertificate(serverCertificateNames(opts.config), now());
  return {
    ca,
    caCreated,
    caKeyFile,
    caKeyFileCreated,
    certChain: Buffer.from(server.certPem),
    privateKey: Buffer.from(server.keyPem),
    clientRoots: Buffer.from(ca.certPem),
    serverTrustPem: [ca.certPem],
    endpoint: { ...addresses, caFingerprint: ca.fingerprint },
    source: "catalog",
  };
}
