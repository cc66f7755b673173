import { randomBytes, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { loadServerConfig } from "@bulwark/config";
import { isBulwarkError } from "@bulwark/errors";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listEnrollmentTokens, mintEnrollmentToken } from "../src/enrollment/tokens.js";
import { ensureCertificateAuthority } from "../src/pki/ca.js";
import { loadOrCreateCaKey } from "../src/pki/key-file.js";
import { prepareServerPki, serverCertificateNames } from "../src/pki/server-pki.js";
import { makeCa } from "./support/pki.js";

// The server CA against a real Postgres: created once, reused after a restart, one CA when
// several nodes start at once, the private key only ever stored sealed under the CA key file.

let db: TestDatabase;
let dir: string;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isBulwarkError(err)) return err.code;
    throw err;
  }
  throw new Error("expected a failure");
}

function config(extra: Record<string, string> = {}) {
  return loadServerConfig({
    environment: { BULWARK_DATA_DIR: join(dir, "data"), BULWARK_GRPC_HOST: "127.0.0.1", ...extra },
  });
}

beforeAll(async () => {
  db = await createTestDatabase("server_pki");
  dir = mkdtempSync(join(tmpdir(), "bulwark-pki-"));
});
afterAll(async () => {
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("server CA", () => {
  it("is created on first start, with a 0600 key file, and reused after a restart", async () => {
    const first = await prepareServerPki({ config: config(), catalog: db.catalog });
    expect(first.caCreated).toBe(true);
    expect(first.caKeyFileCreated).toBe(true);
    expect(statSync(first.caKeyFile).mode & 0o777).toBe(0o600);
    expect(first.source).toBe("catalog");

    const second = await prepareServerPki({ config: config(), catalog: db.catalog });
    expect(second.caCreated).toBe(false);
    expect(second.caKeyFileCreated).toBe(false);
    expect(second.ca.id).toBe(first.ca.id);
    expect(second.ca.fingerprint).toBe(first.ca.fingerprint);
    expect(await db.catalog.certificateAuthority.count()).toBe(1);

    // Stored sealed: the PKCS#8 key is not in the row, and the CA is a pathLen-0 CA.
    const row = await db.catalog.certificateAuthority.findUniqueOrThrow({ where: { id: first.ca.id } });
    expect(row.encryptedPrivateKey[0]).toBe(1);
    const ca = new X509Certificate(row.certPem);
    expect(ca.ca).toBe(true);
    expect(ca.checkIssued(ca)).toBe(true);

    // The listeners' certificate: issued by the CA for the configured names.
    const serverCert = new X509Certificate(second.certChain);
    expect(serverCert.checkIssued(ca)).toBe(true);
    expect(serverCert.verify(ca.publicKey)).toBe(true);
    expect(serverCert.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(second.endpoint.caFingerprint).toBe(first.ca.fingerprint);
  });

  it("creates one CA when several nodes start at once", async () => {
    const other = await createTestDatabase("server_pki_race");
    try {
      const key = randomBytes(32);
      const results = await Promise.all(
        Array.from({ length: 4 }, () => ensureCertificateAuthority(other.catalog, { caKey: key })),
      );
      expect(new Set(results.map((r) => r.ca.id)).size).toBe(1);
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(await other.catalog.certificateAuthority.count()).toBe(1);
    } finally {
      await other.drop();
    }
  });

  it("refuses to start with a key file that does not open the stored CA key", async () => {
    const wrong = join(dir, "wrong.key");
    writeFileSync(wrong, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
    expect(
      await codeOf(prepareServerPki({ config: config({ BULWARK_CA_KEY_FILE: wrong }), catalog: db.catalog })),
    ).toBe("BULWARK_ENROLL_CA_KEY_INVALID");
    const malformed = join(dir, "malformed.key");
    writeFileSync(malformed, "not a key\n");
    expect(await codeOf(loadOrCreateCaKey(malformed))).toBe("BULWARK_ENROLL_CA_KEY_INVALID");
  });

  it("creating the key file races safely: every caller reads the same key", async () => {
    const path = join(dir, "race", "ca.key");
    const keys = await Promise.all(Array.from({ length: 6 }, () => loadOrCreateCaKey(path)));
    expect(new Set(keys.map((k) => k.key.toString("hex"))).size).toBe(1);
    expect(keys.filter((k) => k.created)).toHaveLength(1);
    expect(readFileSync(path, "utf8").trim()).toBe(keys[0]!.key.toString("base64"));
  });

  it("with certificate files configured, presents them and trusts both CAs for agents", async () => {
    const fileCa = makeCa(dir, "file-ca");
    const pki = await prepareServerPki({
      config: config(),
      catalog: db.catalog,
      fileTls: { certChain: Buffer.from("chain"), privateKey: Buffer.from("key"), agentCa: fileCa.cert },
    });
    expect(pki.source).toBe("files");
    expect(pki.certChain.toString()).toBe("chain");
    expect(pki.serverTrustPem).toEqual([fileCa.cert.toString()]);
    expect(pki.endpoint.caFingerprint).not.toBe(pki.ca.fingerprint);
    const roots = pki.clientRoots.toString();
    expect(roots).toContain(fileCa.cert.toString().trim());
    expect(roots).toContain(pki.ca.certPem.trim());
  });

  it("names the server certificate after the listener hosts, advertised addresses and extra SANs", () => {
    const names = serverCertificateNames(
      config({
        BULWARK_GRPC_HOST: "0.0.0.0",
        BULWARK_ADVERTISED_AGENT_ADDRESS: "backup.example.com:8443",
        BULWARK_ADVERTISED_ENROLL_ADDRESS: "enroll.example.com:443",
        BULWARK_GRPC_TLS_SANS: "10.0.0.5, bulwark.internal",
      }),
    );
    expect(names).toEqual(["10.0.0.5", "bulwark.internal", "backup.example.com", "enroll.example.com"]);
  });
});

describe("enrollment tokens", () => {
  it("validates input, checks the group's tenant, and lists tokens without their hash", async () => {
    const tenant = await db.catalog.tenant.create({ data: { slug: "t1", name: "T1" } });
    const stranger = await db.catalog.tenant.create({ data: { slug: "t2", name: "T2" } });
    const foreignGroup = await db.catalog.group.create({ data: { tenantId: stranger.id, name: "g" } });
    const endpoint = { enrollAddress: "h:1", agentAddress: "h:2", caFingerprint: "a".repeat(64) };
    expect(
      await codeOf(mintEnrollmentToken(db.catalog, { tenantId: tenant.id, ttlSeconds: 10 }, { endpoint })),
    ).toBe("BULWARK_GENERAL_VALIDATION");
    expect(
      await codeOf(
        mintEnrollmentToken(
          db.catalog,
          { tenantId: tenant.id, ttlSeconds: 600, tags: ["no spaces"] },
          { endpoint },
        ),
      ),
    ).toBe("BULWARK_GENERAL_VALIDATION");
    expect(
      await codeOf(
        mintEnrollmentToken(
          db.catalog,
          { tenantId: tenant.id, ttlSeconds: 600, groupId: foreignGroup.id },
          { endpoint },
        ),
      ),
    ).toBe("BULWARK_ENROLL_GROUP_NOT_FOUND");

    const minted = await mintEnrollmentToken(
      db.catalog,
      { tenantId: tenant.id, ttlSeconds: 600 },
      { endpoint },
    );
    expect(minted.token).toMatch(/^bwe_[A-Za-z0-9_-]{43}$/);
    expect(JSON.parse(minted.tokenFile)).toMatchObject({ token: minted.token, caSha256: "a".repeat(64) });
    const listed = await listEnrollmentTokens(db.catalog, { tenantId: tenant.id });
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ id: minted.id, state: "active" });
    expect(JSON.stringify(listed)).not.toMatch(/tokenHash|bwe_/);
    const later = await listEnrollmentTokens(
      db.catalog,
      { tenantId: tenant.id, state: "expired" },
      { now: () => new Date(Date.now() + 3600_000) },
    );
    expect(later.map((t) => t.id)).toEqual([minted.id]);
  });
});
