import { randomBytes, randomUUID, X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { loadServerConfig, type ServerConfig } from "@bulwark/config";
import { type BulwarkError, isBulwarkError } from "@bulwark/errors";
import {
  AGENT_CHANNEL_OPTIONS,
  BackupServiceClient,
  EnrollmentServiceClient,
  fromServiceError,
  protocolMetadata,
} from "@bulwark/protocol";
import { type Client, credentials, type ServiceError } from "@grpc/grpc-js";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enroll, fetchPinnedCa } from "../apps/agent/src/identity/enroll.js";
import { renewIfDue } from "../apps/agent/src/identity/renew.js";
import { loadAgentIdentity } from "../apps/agent/src/identity/store.js";
import { parseTokenFile, type TokenFile } from "../apps/agent/src/identity/token-file.js";
import { newKeyAndCsr } from "../apps/agent/src/identity/x509.js";
import { mtlsCredentials, type TlsFiles } from "../apps/agent/src/upload/transport.js";
import type { EnrollmentContext } from "../apps/server/src/enrollment/context.js";
import { MAX_LIVE_CERTIFICATES_PER_AGENT } from "../apps/server/src/enrollment/renew.js";
import { revokeAgent } from "../apps/server/src/enrollment/revoke.js";
import { mintEnrollmentToken, revokeEnrollmentToken } from "../apps/server/src/enrollment/tokens.js";
import { type EnrollListener, startEnrollListener } from "../apps/server/src/grpc/enroll-listener.js";
import { CatalogIdentityResolver } from "../apps/server/src/grpc/identity.js";
import { type AgentListener, startAgentListener } from "../apps/server/src/grpc/server.js";
import { agentListenerCredentials } from "../apps/server/src/grpc/tls.js";
import { prepareServerPki, type ServerPki } from "../apps/server/src/pki/server-pki.js";
import { RepositoryRegistry } from "../apps/server/src/repositories/registry.js";
import { makeCa } from "../apps/server/test/support/pki.js";

// Enrollment end to end, in one process but every part real: Postgres, the server CA from the
// catalog, the enroll listener (TLS) and the agent listener (mTLS) on loopback ports, and the
// agent's own enroll / renew code writing its identity to a temporary state directory.

let db: TestDatabase;
let dir: string;
let config: ServerConfig;
let pki: ServerPki;
let tenantId: string;
let groupId: string;
let agents: AgentListener;
let enrollListener: EnrollListener;
let registry: RepositoryRegistry;
/** The server's clock for identity checks; tests move it to simulate expiry. */
let clock = () => new Date();
const revoked: string[] = [];

function endpoint() {
  return {
    enrollAddress: `127.0.0.1:${enrollListener.port}`,
    agentAddress: `127.0.0.1:${agents.port}`,
    caFingerprint: pki.endpoint.caFingerprint,
  };
}

async function mint(
  opts: { ttlSeconds?: number; now?: () => Date; groupId?: string; tags?: string[] } = {},
): Promise<{ id: string; token: string; file: TokenFile }> {
  const minted = await mintEnrollmentToken(
    db.catalog,
    {
      tenantId,
      ttlSeconds: opts.ttlSeconds ?? 3600,
      ...(opts.groupId ? { groupId: opts.groupId } : {}),
      ...(opts.tags ? { tags: opts.tags } : {}),
    },
    { endpoint: endpoint(), ...(opts.now ? { now: opts.now } : {}) },
  );
  return { id: minted.id, token: minted.token, file: parseTokenFile(minted.tokenFile) };
}

function stateDir(): string {
  return mkdtempSync(join(dir, "agent-"));
}

function machine(): { machineId: string; hostname: string } {
  const id = randomBytes(16).toString("hex");
  return { machineId: id, hostname: `host-${id.slice(0, 8)}` };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isBulwarkError(err)) return err.code;
    throw err;
  }
  throw new Error("expected a failure");
}

function unary<Res>(client: Client, method: unknown, req: unknown): Promise<Res> {
  return new Promise((resolve, reject) =>
    (method as (...a: unknown[]) => void).call(
      client,
      req,
      protocolMetadata(),
      (e: ServiceError | null, r: Res) => (e ? reject(fromServiceError(e)) : resolve(r)),
    ),
  );
}

/** An authenticated BackupService call: an unknown session is NOT_FOUND only once the caller is known. */
async function backupCall(tls: TlsFiles): Promise<string> {
  const client = new BackupServiceClient(
    `127.0.0.1:${agents.port}`,
    await mtlsCredentials(tls),
    AGENT_CHANNEL_OPTIONS,
  );
  try {
    return await codeOf(unary(client, client.queryMissing, { sessionId: randomUUID(), ids: [] }));
  } finally {
    client.close();
  }
}

async function tokenRow(id: string) {
  return db.catalog.enrollmentToken.findUniqueOrThrow({ where: { id } });
}

beforeAll(async () => {
  db = await createTestDatabase("enrollment_e2e");
  dir = mkdtempSync(join(tmpdir(), "bulwark-enroll-"));
  config = loadServerConfig({
    environment: { BULWARK_DATA_DIR: join(dir, "server"), BULWARK_GRPC_HOST: "127.0.0.1" },
  });
  const tenant = await db.catalog.tenant.create({ data: { slug: "default", name: "Default" } });
  tenantId = tenant.id;
  groupId = (await db.catalog.group.create({ data: { tenantId, name: "laptops" } })).id;
  pki = await prepareServerPki({ config, catalog: db.catalog });
  const log = pino({ level: "silent" });
  const context: EnrollmentContext = {
    catalog: db.catalog,
    ca: pki.ca,
    serverTrustPem: pki.serverTrustPem,
    now: () => clock(),
    log,
  };
  registry = new RepositoryRegistry({
    catalog: db.catalog,
    secret: { keyFile: randomBytes(32) },
    threads: 1,
  });
  agents = await startAgentListener({
    catalog: db.catalog,
    repositories: registry,
    identity: new CatalogIdentityResolver(db.catalog, () => clock()),
    credentials: agentListenerCredentials({
      certChain: pki.certChain,
      privateKey: pki.privateKey,
      agentCa: pki.clientRoots,
    }),
    host: "127.0.0.1",
    port: 0,
    idleTimeoutSeconds: 3600,
    sweepIntervalSeconds: 3600,
    log,
    enrollment: context,
  });
  enrollListener = await startEnrollListener({
    context,
    certChain: pki.certChain,
    privateKey: pki.privateKey,
    host: "127.0.0.1",
    port: 0,
  });
});

afterAll(async () => {
  await enrollListener?.close();
  await agents?.close();
  await registry?.close();
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("enrollment", () => {
  it("refuses a wrong CA pin before any token is sent", async () => {
    const { id, file } = await mint();
    const wrong = { ...file, caSha256: "0".repeat(64) };
    expect(await codeOf(fetchPinnedCa(file.enrollAddress, wrong.caSha256))).toBe(
      "BULWARK_ENROLL_CA_PIN_MISMATCH",
    );
    const state = stateDir();
    expect(await codeOf(enroll({ stateDir: state, token: wrong, facts: machine() }))).toBe(
      "BULWARK_ENROLL_CA_PIN_MISMATCH",
    );
    expect((await tokenRow(id)).usedAt).toBeNull();
    expect(await loadAgentIdentity(state)).toBeUndefined();
    // The right pin returns the CA the server certificate chains to.
    expect(await fetchPinnedCa(file.enrollAddress, file.caSha256)).toBe(pki.ca.certPem);
  });

  it("trusts only the pinned certificate from the unverified GetServerCa answer", async () => {
    // A server (or a man in the middle) that appends another CA after the pinned one.
    const rogue = makeCa(dir, "rogue-ca").cert.toString();
    const lying = await startEnrollListener({
      context: {
        catalog: db.catalog,
        ca: pki.ca,
        serverTrustPem: [pki.ca.certPem, rogue],
        now: () => new Date(),
        log: pino({ level: "silent" }),
      },
      certChain: pki.certChain,
      privateKey: pki.privateKey,
      host: "127.0.0.1",
      port: 0,
    });
    try {
      const trusted = await fetchPinnedCa(`127.0.0.1:${lying.port}`, pki.endpoint.caFingerprint);
      expect(trusted).toBe(pki.ca.certPem);
      expect(trusted).not.toContain(rogue.trim().split("\n")[1]);
    } finally {
      await lying.close();
    }
  });

  it("enrolls through the agent's code path; the certificate authenticates on the agent listener", async () => {
    const { id, token, file } = await mint({ groupId, tags: ["site:berlin", "tier-1"] });
    const state = stateDir();
    const facts = machine();
    const identity = await enroll({ stateDir: state, token: file, facts });

    expect(statSync(identity.tls.keyPath).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(readFileSync(identity.tls.certPath));
    expect(cert.subject).toBe(`CN=${identity.agentId}`);
    expect(cert.checkIssued(new X509Certificate(pki.ca.certPem))).toBe(true);
    expect(new Date(cert.validTo).getTime() - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect(identity.agentAddress).toBe(file.agentAddress);
    expect(await loadAgentIdentity(state)).toMatchObject({ agentId: identity.agentId });

    expect(await backupCall(identity.tls)).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");

    const agent = await db.catalog.agent.findUniqueOrThrow({
      where: { id: identity.agentId },
      include: { groups: true, certificates: true },
    });
    expect(agent).toMatchObject({
      tenantId,
      machineId: facts.machineId,
      hostname: facts.hostname,
      status: "ACTIVE",
    });
    expect(agent.tags).toEqual(["site:berlin", "tier-1"]);
    expect(agent.groups.map((g) => g.groupId)).toEqual([groupId]);
    expect(agent.certificates).toHaveLength(1);
    expect(agent.certificates[0]!.serial).toBe(cert.serialNumber);

    // Stored only hashed: the plaintext appears nowhere in the row.
    const row = await tokenRow(id);
    expect(JSON.stringify(row)).not.toContain(token);
    expect(JSON.stringify(row)).not.toContain(token.slice(4));
    expect(row.usedAt).not.toBeNull();
    expect(row.usedByAgent).toBe(identity.agentId);

    const audit = await db.catalog.auditEvent.findMany({ where: { tenantId }, orderBy: { id: "asc" } });
    expect(audit.find((a) => a.action === "enrollment.token.create" && a.targetId === id)).toBeTruthy();
    const enrolled = audit.find((a) => a.action === "agent.enroll" && a.targetId === identity.agentId);
    expect(enrolled).toMatchObject({ actorType: "AGENT", outcome: "SUCCESS" });
    expect(JSON.stringify(audit, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(token);

    // The same token again, even from another machine: single use.
    expect(await codeOf(enroll({ stateDir: stateDir(), token: file, facts: machine() }))).toBe(
      "BULWARK_ENROLL_TOKEN_USED",
    );
    // And this agent cannot enroll a second time over its stored identity.
    expect(await codeOf(enroll({ stateDir: state, token: (await mint()).file, facts }))).toBe(
      "BULWARK_ENROLL_IDENTITY_EXISTS",
    );
  });

  it("refuses expired and revoked tokens", async () => {
    const past = () => new Date(Date.now() - 2 * 3600_000);
    const expired = await mint({ ttlSeconds: 3600, now: past });
    expect(await codeOf(enroll({ stateDir: stateDir(), token: expired.file, facts: machine() }))).toBe(
      "BULWARK_ENROLL_TOKEN_EXPIRED",
    );
    const cancelled = await mint();
    const summary = await revokeEnrollmentToken(db.catalog, { tenantId, tokenId: cancelled.id });
    expect(summary.state).toBe("revoked");
    expect(await codeOf(enroll({ stateDir: stateDir(), token: cancelled.file, facts: machine() }))).toBe(
      "BULWARK_ENROLL_TOKEN_REVOKED",
    );
    const forged = { ...cancelled.file, token: `bwe_${randomBytes(32).toString("base64url")}` };
    expect(await codeOf(enroll({ stateDir: stateDir(), token: forged, facts: machine() }))).toBe(
      "BULWARK_ENROLL_TOKEN_INVALID",
    );
    const denied = await db.catalog.auditEvent.findMany({ where: { tenantId, outcome: "DENIED" } });
    expect(denied.map((d) => (d.details as { code: string }).code)).toEqual(
      expect.arrayContaining(["BULWARK_ENROLL_TOKEN_EXPIRED", "BULWARK_ENROLL_TOKEN_REVOKED"]),
    );
  });

  it("lets exactly one of several concurrent enrollments with one token win", async () => {
    const { file } = await mint();
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => enroll({ stateDir: stateDir(), token: file, facts: machine() })),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.flatMap((r) => (r.status === "rejected" ? [(r.reason as BulwarkError).code] : []));
    expect(won).toHaveLength(1);
    expect(lost).toEqual(Array(4).fill("BULWARK_ENROLL_TOKEN_USED"));
  });

  it("refuses invalid CSRs with a code and leaves the token unspent", async () => {
    const { id, token, file } = await mint();
    const ca = await fetchPinnedCa(file.enrollAddress, file.caSha256);
    const client = new EnrollmentServiceClient(
      file.enrollAddress,
      credentials.createSsl(Buffer.from(ca)),
      AGENT_CHANNEL_OPTIONS,
    );
    const facts = { ...machine(), os: "linux", osVersion: "Debian 12", arch: "x64", agentVersion: "0.1.0" };
    try {
      const garbage = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
      expect(await codeOf(unary(client, client.enroll, { token, csrPem: garbage, facts }))).toBe(
        "BULWARK_ENROLL_CSR_INVALID",
      );
      expect(await codeOf(unary(client, client.enroll, { token, csrPem: "not a csr", facts }))).toBe(
        "BULWARK_ENROLL_CSR_INVALID",
      );
      // A CSR whose signature does not match its key: flip a bit of the signature.
      const { csrPem } = await newKeyAndCsr("x");
      const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
      der[der.length - 3]! ^= 0x01;
      const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64").replace(/.{64}/g, "$&\n")}\n-----END CERTIFICATE REQUEST-----\n`;
      expect(await codeOf(unary(client, client.enroll, { token, csrPem: tampered, facts }))).toBe(
        "BULWARK_ENROLL_CSR_INVALID",
      );
      // Larger than any real enrollment: refused by grpc-js before it is decoded.
      const huge = `-----BEGIN CERTIFICATE REQUEST-----\n${"A".repeat(100_000)}\n-----END CERTIFICATE REQUEST-----\n`;
      expect(await codeOf(unary(client, client.enroll, { token, csrPem: huge, facts }))).toBe(
        "BULWARK_PROTO_MESSAGE_TOO_LARGE",
      );
      const good = await newKeyAndCsr("x");
      expect(
        await codeOf(
          unary(client, client.enroll, {
            token,
            csrPem: good.csrPem,
            facts: { ...facts, hostname: "bad host\n" },
          }),
        ),
      ).toBe("BULWARK_ENROLL_FACTS_INVALID");
    } finally {
      client.close();
    }
    expect((await tokenRow(id)).usedAt).toBeNull();
  });

  it("refuses a second enrollment of an active machine; after revocation the machine may enroll again", async () => {
    const facts = machine();
    const first = await enroll({ stateDir: stateDir(), token: (await mint()).file, facts });
    const second = await mint();
    expect(await codeOf(enroll({ stateDir: stateDir(), token: second.file, facts }))).toBe(
      "BULWARK_ENROLL_IDENTITY_EXISTS",
    );
    expect((await tokenRow(second.id)).usedAt).toBeNull();
    await revokeAgent(db.catalog, first.agentId);
    const again = await enroll({ stateDir: stateDir(), token: second.file, facts });
    expect(again.agentId).toBe(first.agentId);
    expect(await backupCall(again.tls)).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
    // The certificate from before the revocation stays revoked.
    expect(await backupCall(first.tls)).toBe("BULWARK_INGEST_AGENT_REVOKED");
  });

  it("revocation takes effect on the next call and calls onRevoked", async () => {
    const identity = await enroll({ stateDir: stateDir(), token: (await mint()).file, facts: machine() });
    expect(await backupCall(identity.tls)).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
    const result = await revokeAgent(db.catalog, identity.agentId, {
      tenantId,
      actor: { type: "USER", name: "admin@example.com" },
      onRevoked: (agentId) => {
        revoked.push(agentId);
      },
    });
    expect(result).toMatchObject({ certificatesRevoked: 1, alreadyRevoked: false });
    expect(revoked).toContain(identity.agentId);
    expect(await backupCall(identity.tls)).toBe("BULWARK_INGEST_AGENT_REVOKED");
    expect(
      await codeOf(renewIfDue(identity.dir.replace(/\/identity$/, ""), new Date(), { force: true })),
    ).toBe("BULWARK_INGEST_AGENT_REVOKED");
    const audit = await db.catalog.auditEvent.findFirstOrThrow({
      where: { action: "agent.revoke", targetId: identity.agentId },
    });
    expect(audit).toMatchObject({ actorType: "USER", actorName: "admin@example.com" });
    expect(await codeOf(revokeAgent(db.catalog, randomUUID()))).toBe("BULWARK_ENROLL_AGENT_NOT_FOUND");
  });

  it("bounds how many valid certificates renewals can pile up for one agent", async () => {
    const state = stateDir();
    const identity = await enroll({ stateDir: state, token: (await mint()).file, facts: machine() });
    // Enrollment issued one; renewals may add up to MAX_LIVE_CERTIFICATES_PER_AGENT in total.
    for (let i = 1; i < MAX_LIVE_CERTIFICATES_PER_AGENT; i++) {
      expect((await renewIfDue(state, new Date(), { force: true })).renewed).toBe(true);
    }
    expect(await codeOf(renewIfDue(state, new Date(), { force: true }))).toBe("BULWARK_ENROLL_BUSY");
    expect(
      await db.catalog.agentCertificate.count({ where: { agentId: identity.agentId, revokedAt: null } }),
    ).toBe(MAX_LIVE_CERTIFICATES_PER_AGENT);
    // The stored identity still works after the refused renewal.
    expect(await backupCall((await loadAgentIdentity(state))!.tls)).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
  });

  it("renews: a new certificate on a new key, the old one valid until it expires; expired ones are refused", async () => {
    const state = stateDir();
    const before = await enroll({ stateDir: state, token: (await mint()).file, facts: machine() });
    const oldDir = mkdtempSync(join(dir, "old-"));
    const old: TlsFiles = {
      caPath: join(oldDir, "ca.pem"),
      certPath: join(oldDir, "cert.pem"),
      keyPath: join(oldDir, "key.pem"),
    };
    copyFileSync(before.tls.caPath, old.caPath);
    copyFileSync(before.tls.certPath, old.certPath);
    copyFileSync(before.tls.keyPath, old.keyPath);

    expect((await renewIfDue(state, new Date())).renewed).toBe(false);
    // The agent's clock past renewAfter; the server issues at real time (TLS checks real time).
    const { renewed, identity: after } = await renewIfDue(
      state,
      new Date(new Date(before.renewAfter).getTime() + 1),
    );
    expect(renewed).toBe(true);
    const oldCert = new X509Certificate(readFileSync(old.certPath));
    const newCert = new X509Certificate(readFileSync(after.tls.certPath));
    expect(newCert.serialNumber).not.toBe(oldCert.serialNumber);
    expect(newCert.publicKey.export({ type: "spki", format: "der" })).not.toEqual(
      oldCert.publicKey.export({ type: "spki", format: "der" }),
    );
    expect(readFileSync(after.tls.keyPath)).not.toEqual(readFileSync(old.keyPath));
    expect(await backupCall(after.tls)).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
    expect(await backupCall(old)).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
    expect(
      await db.catalog.auditEvent.count({
        where: { action: "agent.certificate.renew", targetId: before.agentId },
      }),
    ).toBe(1);
    const oldRow = await db.catalog.agentCertificate.findUniqueOrThrow({
      where: { serial: oldCert.serialNumber },
    });
    const newRow = await db.catalog.agentCertificate.findUniqueOrThrow({
      where: { serial: newCert.serialNumber },
    });
    expect(newRow.notAfter.getTime()).toBeGreaterThan(oldRow.notAfter.getTime());

    // Past the old certificate's notAfter (server clock moved), only the new one works.
    clock = () => oldRow.notAfter;
    try {
      expect(await backupCall(old)).toBe("BULWARK_INGEST_AGENT_REVOKED");
      expect(await backupCall(after.tls)).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
    } finally {
      clock = () => new Date();
    }
  });
});
