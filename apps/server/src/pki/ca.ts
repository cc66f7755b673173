import { createHash, randomBytes, randomUUID, X509Certificate } from "node:crypto";
import type { Catalog } from "@bulwark/catalog";
import { openCaKey, sealCaKey } from "./seal.js";
import {
  type CryptoKey,
  EC_ALGORITHM,
  generateKeyPair,
  privateKeyPem,
  randomSerial,
  subtle,
  x509,
} from "./x509.js";

// The server's certificate authority (docs/security.md, "The server CA"): one per installation,
// kept in the catalog so every server node signs with it, created by the first node that starts.
// It signs the agents' client certificates (CN = agent ID) and the server's own TLS certificate.

/** Ten years: the CA is the anchor agents pin at enrollment; replacing it means re-enrolling. */
export const CA_LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000;
/**
 * 30 days: short enough that a stolen agent key stops working within a month even if nobody
 * revokes it, long enough that an agent offline for a holiday still renews (at two thirds).
 */
export const CLIENT_CERT_LIFETIME_MS = 30 * 24 * 3600 * 1000;
/** Agents renew once this fraction of the lifetime has passed; a third of it is left for retries. */
export const RENEW_AT_FRACTION = 2 / 3;
/** The server's own TLS certificate is reissued at every start; a year outlasts any uptime. */
export const SERVER_CERT_LIFETIME_MS = 365 * 24 * 3600 * 1000;
/** notBefore is set this far back, so that a peer whose clock lags a little accepts a fresh certificate. */
export const CLOCK_SKEW_MS = 5 * 60 * 1000;
/** Postgres advisory lock key that serializes CA creation across server nodes ("bulwarkCA"). */
const CA_CREATE_LOCK = 0x62_75_6c_43_41n;

/** A certificate the CA issued to an agent, as recorded in AgentCertificate. */
export interface IssuedClientCertificate {
  pem: string;
  /** Node's notation (uppercase hex), as the harness and CatalogIdentityResolver read it. */
  serial: string;
  /** SHA-256 of the DER, lowercase hex (AgentCertificate.fingerprint). */
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
  renewAfter: Date;
}

export interface CaLifetimes {
  clientCertificateMs: number;
}

/** SHA-256 of a certificate's DER, lowercase hex: the pin in a token file and the catalog's fingerprint. */
export function derFingerprint(pem: string): string {
  return createHash("sha256").update(new X509Certificate(pem).raw).digest("hex");
}

export class ServerCa {
  readonly fingerprint: string;

  constructor(
    readonly id: string,
    readonly certPem: string,
    private readonly cert: x509.X509Certificate,
    private readonly privateKey: CryptoKey,
    readonly lifetimes: CaLifetimes = { clientCertificateMs: CLIENT_CERT_LIFETIME_MS },
  ) {
    this.fingerprint = derFingerprint(certPem);
  }

  get notAfter(): Date {
    return this.cert.notAfter;
  }

  /** A client certificate for `agentId` over `publicKey` (from a verified CSR). */
  async issueClientCertificate(
    publicKey: x509.PublicKey,
    agentId: string,
    now: Date,
  ): Promise<IssuedClientCertificate> {
    const notBefore = new Date(now.getTime() - CLOCK_SKEW_MS);
    const wanted = new Date(now.getTime() + this.lifetimes.clientCertificateMs);
    // Never past the CA itself: a chain is only as valid as its root.
    const notAfter = wanted < this.cert.notAfter ? wanted : this.cert.notAfter;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(randomBytes),
      subject: `CN=${agentId}`,
      issuer: this.cert.subjectName,
      notBefore,
      notAfter,
      publicKey,
      signingKey: this.privateKey,
      signingAlgorithm: EC_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert.publicKey),
      ],
    });
    const pem = cert.toString("pem");
    const node = new X509Certificate(pem);
    const renewAfter = new Date(
      now.getTime() + Math.floor((notAfter.getTime() - now.getTime()) * RENEW_AT_FRACTION),
    );
    return {
      pem,
      serial: node.serialNumber,
      fingerprint: createHash("sha256").update(node.raw).digest("hex"),
      notBefore,
      notAfter,
      renewAfter,
    };
  }

  /** The server's TLS certificate and a fresh key for `names` (DNS names or IP addresses). */
  async issueServerCertificate(names: string[], now: Date): Promise<{ certPem: string; keyPem: string }> {
    const keys = await generateKeyPair();
    const notAfter = new Date(
      Math.min(now.getTime() + SERVER_CERT_LIFETIME_MS, this.cert.notAfter.getTime()),
    );
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(randomBytes),
      subject: `CN=${names[0] ?? "bulwark-server"}`,
      issuer: this.cert.subjectName,
      notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
      notAfter,
      publicKey: keys.publicKey,
      signingKey: this.privateKey,
      signingAlgorithm: EC_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(
          names.map((n) => ({ type: isIpAddress(n) ? ("ip" as const) : ("dns" as const), value: n })),
        ),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert.publicKey),
      ],
    });
    return { certPem: cert.toString("pem"), keyPem: await privateKeyPem(keys.privateKey) };
  }
}

export function isIpAddress(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(":");
}

async function createCaMaterial(
  id: string,
  now: Date,
): Promise<{ certPem: string; pkcs8: Buffer; notAfter: Date }> {
  const keys = await generateKeyPair();
  const notAfter = new Date(now.getTime() + CA_LIFETIME_MS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(randomBytes),
    // The row ID in the name tells CAs of different installations (or a rotated one) apart.
    name: `CN=Bulwark CA ${id}, O=Bulwark`,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter,
    keys,
    signingAlgorithm: EC_ALGORITHM,
    extensions: [
      // pathLength 0: this CA signs leaves only, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await subtle.exportKey("pkcs8", keys.privateKey));
  return { certPem: cert.toString("pem"), pkcs8, notAfter };
}

async function loadCa(
  row: { id: string; certPem: string; encryptedPrivateKey: Uint8Array },
  caKey: Buffer,
  lifetimes?: CaLifetimes,
): Promise<ServerCa> {
  const pkcs8 = openCaKey(caKey, row.id, row.encryptedPrivateKey);
  const privateKey = await subtle.importKey("pkcs8", pkcs8, EC_ALGORITHM, false, ["sign"]);
  pkcs8.fill(0);
  return new ServerCa(row.id, row.certPem, new x509.X509Certificate(row.certPem), privateKey, lifetimes);
}

export interface EnsureCaOptions {
  /** The 32-byte key from the CA key file (loadOrCreateCaKey). */
  caKey: Buffer;
  now?: () => Date;
  lifetimes?: CaLifetimes;
}

/**
 * The active CA (newest, not retired, not expired), created when there is none. Creation runs in
 * a transaction holding a Postgres advisory lock, so two nodes starting at once create one CA:
 * the second waits, then finds the first one's row.
 */
export async function ensureCertificateAuthority(
  catalog: Catalog,
  opts: EnsureCaOptions,
): Promise<{ ca: ServerCa; created: boolean }> {
  const now = (opts.now ?? (() => new Date()))();
  const active = { retiredAt: null, notAfter: { gt: now } };
  const existing = await catalog.certificateAuthority.findFirst({
    where: active,
    orderBy: { createdAt: "desc" },
  });
  if (existing) return { ca: await loadCa(existing, opts.caKey, opts.lifetimes), created: false };

  const id = randomUUID();
  const material = await createCaMaterial(id, now);
  const { row, created } = await catalog.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(${CA_CREATE_LOCK})`;
    const winner = await tx.certificateAuthority.findFirst({ where: active, orderBy: { createdAt: "desc" } });
    if (winner) return { row: winner, created: false };
    const inserted = await tx.certificateAuthority.create({
      data: {
        id,
        certPem: material.certPem,
        encryptedPrivateKey: new Uint8Array(sealCaKey(opts.caKey, id, material.pkcs8)),
        notAfter: material.notAfter,
      },
    });
    return { row: inserted, created: true };
  });
  material.pkcs8.fill(0);
  return { ca: await loadCa(row, opts.caKey, opts.lifetimes), created };
}
