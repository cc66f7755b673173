import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isBulwarkError } from "@bulwark/errors";
import { afterAll, describe, expect, it } from "vitest";
import {
  type AgentIdentityMaterial,
  loadAgentIdentity,
  requireAgentIdentity,
  saveAgentIdentity,
} from "../src/identity/store.js";
import { parseTokenFile } from "../src/identity/token-file.js";

// The agent's identity directory: atomic replacement of the four files, recovery from a save cut
// short, and the token file parser (which must never echo the token).

const root = mkdtempSync(join(tmpdir(), "bulwark-identity-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function material(tag: string): AgentIdentityMaterial {
  return {
    record: {
      version: 1,
      agentId: "6f1c1a52-7a3e-4c59-9d59-4d1b2f8e0a11",
      agentAddress: "backup.example.com:8443",
      enrollAddress: "backup.example.com:8444",
      caFingerprint: "ab".repeat(32),
      notAfter: "2026-12-29T00:00:00.000Z",
      renewAfter: "2026-12-19T00:00:00.000Z",
    },
    caPem: `ca ${tag}\n`,
    certPem: `cert ${tag}\n`,
    keyPem: `key ${tag}\n`,
  };
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

describe("identity store", () => {
  it("saves, loads and replaces the identity; the key is 0600", async () => {
    const state = join(root, "a");
    expect(await loadAgentIdentity(state)).toBeUndefined();
    expect(await codeOf(requireAgentIdentity(state))).toBe("BULWARK_ENROLL_NOT_ENROLLED");
    const saved = await saveAgentIdentity(state, material("one"));
    expect(statSync(saved.tls.keyPath).mode & 0o777).toBe(0o600);
    expect(statSync(saved.dir).mode & 0o777).toBe(0o700);
    const loaded = await loadAgentIdentity(state);
    expect(loaded).toMatchObject({ agentId: saved.agentId, agentAddress: "backup.example.com:8443" });
    await saveAgentIdentity(state, material("two"));
    expect(readFileSync(saved.tls.certPath, "utf8")).toBe("cert two\n");
    expect(readFileSync(saved.tls.keyPath, "utf8")).toBe("key two\n");
  });

  it("finishes a save that was cut after the set was complete, and drops an incomplete one", async () => {
    const state = join(root, "b");
    const saved = await saveAgentIdentity(state, material("old"));
    // Crash after staging the new set and marking it complete, before the renames.
    const staging = join(saved.dir, ".staging");
    mkdirSync(staging);
    writeFileSync(join(staging, "cert.pem"), "cert new\n");
    writeFileSync(join(staging, "key.pem"), "key new\n");
    writeFileSync(join(staging, "COMPLETE"), "x\n");
    await loadAgentIdentity(state);
    expect(readFileSync(saved.tls.certPath, "utf8")).toBe("cert new\n");
    expect(readFileSync(saved.tls.keyPath, "utf8")).toBe("key new\n");

    // Crash while staging (no COMPLETE marker): the old pair stays, the half set is discarded.
    mkdirSync(staging);
    writeFileSync(join(staging, "cert.pem"), "cert half\n");
    await loadAgentIdentity(state);
    expect(readFileSync(saved.tls.certPath, "utf8")).toBe("cert new\n");
    expect(() => statSync(staging)).toThrow();
  });

  it("reports a damaged identity instead of guessing", async () => {
    const state = join(root, "c");
    const saved = await saveAgentIdentity(state, material("x"));
    writeFileSync(join(saved.dir, "agent.json"), "{}");
    expect(await codeOf(loadAgentIdentity(state))).toBe("BULWARK_ENROLL_NOT_ENROLLED");
    rmSync(saved.tls.keyPath);
    expect(await codeOf(loadAgentIdentity(state))).toBe("BULWARK_ENROLL_NOT_ENROLLED");
  });
});

describe("token file", () => {
  const token = `bwe_${"A".repeat(43)}`;
  const valid = {
    kind: "bulwark-enrollment-token",
    version: 1,
    enrollAddress: "127.0.0.1:8444",
    agentAddress: "[::1]:8443",
    caSha256: "0f".repeat(32),
    token,
  };

  it("parses a valid file", () => {
    expect(parseTokenFile(JSON.stringify(valid))).toMatchObject({ token, agentAddress: "[::1]:8443" });
  });

  it("refuses malformed files without echoing the token", () => {
    for (const bad of [
      "not json",
      JSON.stringify({ ...valid, kind: "other" }),
      JSON.stringify({ ...valid, caSha256: "XYZ" }),
      JSON.stringify({ ...valid, token: `${token}!` }),
      JSON.stringify({ ...valid, enrollAddress: "no-port" }),
    ]) {
      try {
        parseTokenFile(bad);
        throw new Error(`accepted ${bad}`);
      } catch (err) {
        expect(isBulwarkError(err, "BULWARK_ENROLL_TOKEN_FILE_INVALID"), String(err)).toBe(true);
        expect((err as Error).message).not.toContain("AAAAAAAA");
      }
    }
  });
});
