import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BulwarkError, isBulwarkError } from "@bulwark/errors";
import { describe, expect, it } from "vitest";
import { loadAgentConfig, loadServerConfig } from "../src/index.js";

function configError(fn: () => unknown): BulwarkError {
  try {
    fn();
  } catch (err) {
    if (err instanceof BulwarkError) return err;
    throw err;
  }
  throw new Error("expected a configuration error");
}

describe("server configuration", () => {
  it("has working defaults for a local install", () => {
    const cfg = loadServerConfig({ environment: {} });
    expect(cfg).toMatchObject({
      httpHost: "127.0.0.1",
      httpPort: 8080,
      databaseUrl: "postgresql://postgres@127.0.0.1:5432/bulwark",
      redisUrl: "redis://127.0.0.1:6379",
      migrateOnStart: true,
    });
  });

  it("keeps each catalog's jobs apart in a shared Redis unless told otherwise", () => {
    expect(loadServerConfig({ environment: {} }).queuePrefix).toBe("bulwark-bulwark");
    const other = loadServerConfig({
      environment: { DATABASE_URL: "postgresql://postgres@127.0.0.1:5432/site%20b-2?sslmode=disable" },
    });
    expect(other.queuePrefix).toBe("bulwark-site_b-2");
    const given = loadServerConfig({
      environment: { DATABASE_URL: "postgresql://db/x", BULWARK_QUEUE_PREFIX: "shared" },
    });
    expect(given.queuePrefix).toBe("shared");
    expect(() => loadServerConfig({ environment: { BULWARK_QUEUE_PREFIX: "no spaces" } })).toThrow(
      /BULWARK_QUEUE_PREFIX/,
    );
  });

  it("coerces environment strings and lets the environment win over the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "bulwark-config-"));
    const file = join(dir, "server.json");
    writeFileSync(file, JSON.stringify({ httpPort: 9000, logLevel: "debug", migrateOnStart: false }));
    const cfg = loadServerConfig({ environment: { BULWARK_CONFIG: file, BULWARK_HTTP_PORT: "9100" } });
    expect(cfg.httpPort).toBe(9100);
    expect(cfg.logLevel).toBe("debug");
    expect(cfg.migrateOnStart).toBe(false);
  });

  it("names the variable, the key and the problem for each invalid value", () => {
    const err = configError(() =>
      loadServerConfig({ environment: { BULWARK_HTTP_PORT: "eighty", REDIS_URL: "http://localhost:6379" } }),
    );
    expect(err.code).toBe("BULWARK_CONFIG_INVALID");
    expect(err.message).toMatch(/BULWARK_HTTP_PORT \/ httpPort: expected a port number \(got "eighty"\)/);
    expect(err.message).toMatch(
      /REDIS_URL \/ redisUrl: expected a URL starting with redis:\/\/ or rediss:\/\//,
    );
    expect(err.details?.problems).toHaveLength(2);
  });

  it("takes the agent listener's TLS files all together or not at all", () => {
    expect(loadServerConfig({ environment: {} }).grpcTlsCertFile).toBeUndefined();
    const all = loadServerConfig({
      environment: {
        BULWARK_GRPC_TLS_CERT_FILE: "/etc/bulwark/server.crt",
        BULWARK_GRPC_TLS_KEY_FILE: "/etc/bulwark/server.key",
        BULWARK_AGENT_CA_FILE: "/etc/bulwark/agent-ca.crt",
      },
    });
    expect(all).toMatchObject({ grpcTlsKeyFile: "/etc/bulwark/server.key", sessionIdleTimeoutSeconds: 3600 });
    const err = configError(() =>
      loadServerConfig({ environment: { BULWARK_GRPC_TLS_CERT_FILE: "/etc/bulwark/server.crt" } }),
    );
    expect(err.message).toContain(
      "BULWARK_GRPC_TLS_KEY_FILE / grpcTlsKeyFile: required with grpcTlsCertFile",
    );
    expect(err.message).toContain("BULWARK_AGENT_CA_FILE / agentCaFile: required with grpcTlsCertFile");
  });

  it("takes one repository secret and bounded session timings", () => {
    const err = configError(() =>
      loadServerConfig({
        environment: {
          BULWARK_REPOSITORY_PASSPHRASE_FILE: "/a",
          BULWARK_REPOSITORY_KEY_FILE: "/b",
          BULWARK_SESSION_IDLE_TIMEOUT_SECONDS: "5",
        },
      }),
    );
    expect(err.message).toContain(
      "repositoryKeyFile: set either repositoryPassphraseFile or repositoryKeyFile",
    );
    expect(err.message).toContain("sessionIdleTimeoutSeconds: expected at least 60 seconds");
  });

  it("rejects out-of-range ports and bad booleans", () => {
    expect(
      configError(() => loadServerConfig({ environment: { BULWARK_GRPC_PORT: "70000" } })).message,
    ).toContain("BULWARK_GRPC_PORT / grpcPort: expected a port from 1 to 65535");
    expect(
      configError(() => loadServerConfig({ environment: { BULWARK_MIGRATE_ON_START: "yes" } })).message,
    ).toContain("BULWARK_MIGRATE_ON_START / migrateOnStart: expected true or false");
  });

  it("refuses unknown keys and unreadable files instead of ignoring them", () => {
    const dir = mkdtempSync(join(tmpdir(), "bulwark-config-"));
    const typo = join(dir, "typo.json");
    writeFileSync(typo, JSON.stringify({ httpPrt: 1 }));
    expect(configError(() => loadServerConfig({ environment: {}, file: typo })).message).toContain(
      "httpPrt (in",
    );
    const broken = join(dir, "broken.json");
    writeFileSync(broken, "{ not json");
    expect(
      isBulwarkError(
        configError(() => loadServerConfig({ environment: {}, file: broken })),
        "BULWARK_CONFIG_FILE_UNREADABLE",
      ),
    ).toBe(true);
    expect(
      configError(() => loadServerConfig({ environment: {}, file: join(dir, "missing.json") })).code,
    ).toBe("BULWARK_CONFIG_FILE_UNREADABLE");
  });
});

describe("agent configuration", () => {
  it("requires https for the server URL", () => {
    expect(
      loadAgentConfig({ environment: { BULWARK_SERVER_URL: "https://backup.example.org:8443" } }).serverUrl,
    ).toBe("https://backup.example.org:8443");
    expect(
      configError(() => loadAgentConfig({ environment: { BULWARK_SERVER_URL: "http://x" } })).message,
    ).toContain("BULWARK_SERVER_URL / serverUrl");
  });
});
