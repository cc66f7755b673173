import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { isBulwarkError } from "@bulwark/errors";
import {
  AGENT_CHANNEL_OPTIONS,
  BackupServiceClient,
  type BeginSessionResponse,
  fromServiceError,
  protocolMetadata,
} from "@bulwark/protocol";
import { LocalBackend, Repository } from "@bulwark/repository";
import { credentials, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issue, makeCa } from "./support/pki.js";

// bulwark-server as a process: `repo init`, and start-up with the agent listener configured.

const serverMain = fileURLToPath(new URL("../src/main.ts", import.meta.url));
const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));

function run(args: string[], env: Record<string, string>) {
  const child: ChildProcess = spawn(
    process.execPath,
    ["--conditions=source", "--import", "tsx", serverMain, ...args],
    {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, exited, output: () => output };
}

const handedOut = new Set<number>();

/** A port that was free a moment ago and not handed out before (the OS may offer one again at once). */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once("error", reject);
      srv.listen(0, "127.0.0.1", () => {
        const { port } = srv.address() as { port: number };
        srv.close(() => resolve(port));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

let db: TestDatabase;
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase("server_main_ingest", { migrate: false });
  dir = mkdtempSync(join(tmpdir(), "bulwark-main-"));
  writeFileSync(join(dir, "repo.key"), randomBytes(32));
  env = {
    DATABASE_URL: db.url,
    BULWARK_REPOSITORY_KEY_FILE: join(dir, "repo.key"),
    BULWARK_LOG_LEVEL: "info",
    // The CA key file lives here; the enroll listener gets a free port per test.
    BULWARK_DATA_DIR: join(dir, "server-data"),
  };
});
afterAll(async () => {
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("bulwark-server process", () => {
  it("`repo init` creates the repository and its catalog row, once", async () => {
    const location = join(dir, "repo");
    const first = run(["repo", "init", "--location", location, "--name", "main"], env);
    expect(await first.exited, first.output()).toBe(0);
    expect(first.output()).toContain(`repository main created at ${location}`);
    const row = await db.catalog.repository.findFirstOrThrow({ where: { name: "main" } });
    const repo = await Repository.open(new LocalBackend(location), { keyFile: Buffer.alloc(0) }).catch(
      (e) => e,
    );
    expect(isBulwarkError(repo)).toBe(true); // the key file is what opens it
    const config = await Repository.readConfig(new LocalBackend(location));
    expect(config.repositoryId).toBe(row.repoUuid);
    const again = run(["repo", "init", "--location", location, "--name", "main"], env);
    expect(await again.exited).toBe(1);
    expect(again.output()).toContain("BULWARK_REPO_ALREADY_EXISTS");
  }, 120_000);

  it("stops start-up naming the key of a TLS file it cannot read", async () => {
    const proc = run([], {
      ...env,
      BULWARK_HTTP_PORT: String(await freePort()),
      BULWARK_GRPC_TLS_CERT_FILE: join(dir, "nope.crt"),
      BULWARK_GRPC_TLS_KEY_FILE: join(dir, "nope.key"),
      BULWARK_AGENT_CA_FILE: join(dir, "nope-ca.crt"),
    });
    expect(await proc.exited).toBe(1);
    expect(proc.output()).toContain("BULWARK_CONFIG_INVALID");
    expect(proc.output()).toContain("BULWARK_GRPC_TLS_CERT_FILE / grpcTlsCertFile: cannot read");
  }, 60_000);

  it("serves the agent listener with mutual TLS and stops cleanly", async () => {
    const ca = makeCa(dir, "ca");
    const server = issue(dir, ca, "server", "server");
    const stranger = issue(dir, ca, "00000000-0000-4000-8000-000000000001", "client");
    writeFileSync(join(dir, "server.crt"), server.cert);
    writeFileSync(join(dir, "server.key"), server.key);
    const grpcPort = await freePort();
    const proc = run([], {
      ...env,
      BULWARK_HTTP_PORT: String(await freePort()),
      BULWARK_GRPC_PORT: String(grpcPort),
      BULWARK_ENROLL_PORT: String(await freePort()),
      BULWARK_GRPC_TLS_CERT_FILE: join(dir, "server.crt"),
      BULWARK_GRPC_TLS_KEY_FILE: join(dir, "server.key"),
      BULWARK_AGENT_CA_FILE: join(dir, "ca.crt"),
    });
    try {
      // Start-up (migrations, CA) can take a minute on a loaded machine; a wait that ran out used
      // to fall through to a refused connection instead of saying so.
      const deadline = Date.now() + 180_000;
      while (!proc.output().includes("agent listener")) {
        if (proc.child.exitCode !== null) throw new Error(proc.output());
        if (Date.now() > deadline) throw new Error(`no agent listener after 180 s:\n${proc.output()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const client = new BackupServiceClient(
        `127.0.0.1:${grpcPort}`,
        credentials.createSsl(ca.cert, stranger.key, stranger.cert),
        {
          ...AGENT_CHANNEL_OPTIONS,
          "grpc.ssl_target_name_override": "localhost",
          "grpc.default_authority": "localhost",
        },
      );
      const err = await new Promise<unknown>((resolve) =>
        client.beginSession(
          {
            jobId: "x",
            volumeId: "v",
            previousRestorePointId: "",
            previousIndexDigest: Buffer.alloc(0),
            resumeToken: Buffer.alloc(0),
            geometry: undefined,
          },
          protocolMetadata(),
          (e: ServiceError | null, r?: BeginSessionResponse) => resolve(e ? fromServiceError(e) : r),
        ),
      );
      client.close();
      // Through TLS with a certificate of the CA, but not one the catalog issued.
      expect(isBulwarkError(err, "BULWARK_INGEST_UNAUTHENTICATED"), `${String(err)}\n${proc.output()}`).toBe(
        true,
      );
    } finally {
      // Usually still starting (alerts, enroll, NBD, HTTP): the signal is held and acted on once
      // started. A second one while it stops must change nothing.
      proc.child.kill("SIGTERM");
      setTimeout(() => proc.child.kill("SIGTERM"), 50).unref();
    }
    expect(await proc.exited, proc.output()).toBe(0);
    expect(proc.child.signalCode, proc.output()).toBeNull();
    expect(proc.output()).toContain("shutting down");
  }, 300_000);
});
