import { createHash, randomBytes, randomUUID, X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_GROUPS_IN_FLIGHT, GROUP_BYTES } from "../apps/agent/src/upload/pipeline.js";
import { isRoot, LoopDevices, MiB, ROOT_REASON, sh } from "../apps/agent/test/helpers/system.js";
import { TcpProxy } from "../apps/agent/test/helpers/tcp-proxy.js";
import { makeTestPki, type TestPki } from "../apps/agent/test/helpers/tls.js";
import { freePort, type RunningProcess, repoRoot, runTs } from "./support/processes.js";

// Agent → real bulwark-server → repository, every piece a real process: a loop device with a real
// ext4, the agent CLI, the server binary with mTLS and its Postgres catalog, and bulwark-repo to
// restore. Faults: the agent SIGKILLed mid-upload, and the TCP connection cut mid-stream.

const serverMain = join(repoRoot, "apps/server/src/main.ts");
const agentMain = join(repoRoot, "apps/agent/src/cli.ts");
const repoMain = join(repoRoot, "apps/repo-tool/src/main.ts");
const VOLUME_MIB = 64;

interface AgentReport {
  restorePointId: string;
  sessionId: string;
  resumedSession: boolean;
  method: string;
  reconnects: number;
  counters: {
    bytesRead: number;
    bytesSent: number;
    chunksSent: number;
    chunksUnchanged: number;
    chunksQueried: number;
  };
}

describe.skipIf(!isRoot)(`backup end to end through the real server (${ROOT_REASON})`, () => {
  let db: TestDatabase;
  let dir: string;
  let pki: TestPki;
  let server: RunningProcess | undefined;
  let grpcPort: number;
  let agentId: string;
  let tenantId: string;
  const loops = new LoopDevices();
  const keyFile = () => join(dir, "repo.key");
  const repoDir = () => join(dir, "repo");

  async function startServer(): Promise<void> {
    const proc = runTs(serverMain, [], {
      DATABASE_URL: db.url,
      BULWARK_REPOSITORY_KEY_FILE: keyFile(),
      BULWARK_HTTP_PORT: String(await freePort()),
      BULWARK_GRPC_PORT: String(grpcPort),
      BULWARK_GRPC_TLS_CERT_FILE: pki.serverCertPath,
      BULWARK_GRPC_TLS_KEY_FILE: pki.serverKeyPath,
      BULWARK_AGENT_CA_FILE: pki.caPath,
      BULWARK_DATA_DIR: join(dir, "server-data"),
      BULWARK_ENROLL_PORT: String(await freePort()),
    });
    const deadline = Date.now() + 90_000;
    while (!proc.output().includes("agent listener")) {
      if (proc.child.exitCode !== null || Date.now() > deadline)
        throw new Error(`server did not start:\n${proc.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    server = proc;
  }

  beforeAll(async () => {
    db = await createTestDatabase("backup_e2e");
    dir = mkdtempSync(join(tmpdir(), "bulwark-e2e-"));
    writeFileSync(keyFile(), randomBytes(32));
    pki = makeTestPki(dir);
    grpcPort = await freePort();
    const init = runTs(serverMain, ["repo", "init", "--location", repoDir(), "--name", "main"], {
      DATABASE_URL: db.url,
      BULWARK_REPOSITORY_KEY_FILE: keyFile(),
    });
    expect((await init.exited).code, init.output()).toBe(0);
    // The server creates its CA on first start. This test's agent certificate comes from the test
    // PKI (accepted through BULWARK_AGENT_CA_FILE), recorded against the server's CA as an issued one.
    await startServer();
    tenantId = (await db.catalog.tenant.findFirstOrThrow({ where: { slug: "default" } })).id;
    const ca = await db.catalog.certificateAuthority.findFirstOrThrow({ where: { retiredAt: null } });
    agentId = pki.agentId;
    await db.catalog.agent.create({
      data: {
        id: agentId,
        tenantId,
        machineId: agentId,
        hostname: "e2e-host",
        os: "linux",
        agentVersion: "0.1.0",
      },
    });
    const x509 = new X509Certificate(readFileSync(pki.clientCertPath));
    await db.catalog.agentCertificate.create({
      data: {
        serial: x509.serialNumber,
        agentId,
        caId: ca.id,
        fingerprint: createHash("sha256").update(x509.raw).digest("hex"),
        notAfter: new Date(x509.validTo),
      },
    });
  }, 180_000);

  afterEach(() => loops.cleanup());
  afterAll(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * A one-shot backup job (one restore point per job). Its deadline matters when the server
   * restarts: the job system then takes over open jobs, waits for the (one-shot, so never online)
   * agent until the deadline, and finds the committed restore point once the agent commits.
   */
  async function job(): Promise<string> {
    const deadline = new Date(Date.now() + 3_600_000).toISOString();
    const row = await db.catalog.job.create({
      data: {
        tenantId,
        kind: "BACKUP",
        state: "RUNNING",
        idempotencyKey: randomUUID(),
        agentId,
        params: { manual: true, deadline },
      },
    });
    return row.id;
  }

  function agent(device: string, jobId: string, stateDir: string, extra: string[] = [], port = grpcPort) {
    const proc = runTs(
      agentMain,
      [
        "backup",
        device,
        "--json",
        "--server",
        `https://127.0.0.1:${port}`,
        "--volume-key",
        "e2e-volume",
        "--job",
        jobId,
        "--state-dir",
        stateDir,
        "--ca",
        pki.caPath,
        "--cert",
        pki.clientCertPath,
        "--key",
        pki.clientKeyPath,
        ...extra,
      ],
      {},
    );
    let stdout = "";
    proc.child.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    return { proc, stdout: () => stdout };
  }

  async function finish(run: ReturnType<typeof agent>): Promise<AgentReport> {
    const { code } = await run.proc.exited;
    expect(code, run.proc.output()).toBe(0);
    try {
      return JSON.parse(run.stdout()) as AgentReport;
    } catch (err) {
      throw new Error(
        `the agent exited 0 but its --json report does not parse (${(err as Error).message}); stdout was ${JSON.stringify(run.stdout())}; output:\n${run.proc.output()}`,
      );
    }
  }

  /** Restores through the repository with the offline tool and returns the image. */
  async function restore(restorePointId: string): Promise<Buffer> {
    const backup = await db.catalog.backup.findUniqueOrThrow({ where: { id: restorePointId } });
    const out = join(dir, `restored-${restorePointId}.img`);
    const cat = runTs(
      repoMain,
      ["--repo", repoDir(), "--key-file", keyFile(), "cat", backup.indexRef, "-o", out],
      {},
    );
    expect((await cat.exited).code, cat.output()).toBe(0);
    return readFileSync(out);
  }

  /** A loop device over a fresh image with a real ext4; files are written through a real mount. */
  function makeVolume(name: string): { device: string; write(files: Record<string, Buffer>): void } {
    const image = join(dir, `${name}.img`);
    writeFileSync(image, "");
    sh("truncate", ["-s", `${VOLUME_MIB}M`, image]);
    sh("mkfs.ext4", ["-q", "-F", "-b", "4096", image]);
    const device = loops.attach(image);
    const mnt = join(dir, `${name}-mnt`);
    mkdirSync(mnt, { recursive: true });
    return {
      device,
      write(files) {
        sh("mount", ["-t", "ext4", device, mnt]);
        try {
          for (const [f, data] of Object.entries(files)) writeFileSync(join(mnt, f), data);
        } finally {
          sh("umount", [mnt]); // unmounted during the backup: consistency "unmounted", bitmap trusted
        }
      },
    };
  }

  it("full, then incremental sending only changed chunks; both restore byte for byte", async () => {
    const vol = makeVolume("incr");
    vol.write({ "a.bin": randomBytes(12 * MiB), "b.txt": Buffer.from("hello ".repeat(100_000)) });
    const state = join(dir, "state-incr");
    const full = await finish(agent(vol.device, await job(), state));
    expect(full.method).toBe("full-read");
    expect(full.counters.bytesSent).toBeGreaterThan(12 * MiB);
    expect((await restore(full.restorePointId)).equals(readFileSync(vol.device))).toBe(true);

    vol.write({ "c.bin": randomBytes(1 * MiB) });
    const incr = await finish(agent(vol.device, await job(), state));
    expect(incr.method).toBe("hash-cache");
    // 1 MiB of new data = 16 chunks of 64 KiB, plus a few of ext4 metadata (bitmaps, inodes, journal).
    expect(incr.counters.chunksSent).toBeGreaterThanOrEqual(16);
    expect(incr.counters.chunksSent).toBeLessThanOrEqual(40);
    expect(incr.counters.bytesSent).toBeLessThan(3 * MiB);
    expect(incr.counters.chunksUnchanged).toBeGreaterThan(190);
    expect((await restore(incr.restorePointId)).equals(readFileSync(vol.device))).toBe(true);
  }, 180_000);

  it("an agent SIGKILLed mid-upload resumes its session on the next run and the result verifies", async () => {
    const vol = makeVolume("kill");
    vol.write({ "big.bin": randomBytes(24 * MiB) });
    const state = join(dir, "state-kill");
    const jobId = await job();
    // Throttled so that the kill lands mid-upload.
    const first = agent(vol.device, jobId, state, ["--bandwidth-limit", String(4 * MiB)]);
    const deadline = Date.now() + 60_000;
    while (!/"bytesSent":\s*[1-9]\d{6,}/.test(first.proc.output())) {
      if (first.proc.child.exitCode !== null || Date.now() > deadline) throw new Error(first.proc.output());
      await new Promise((r) => setTimeout(r, 50));
    }
    first.proc.child.kill("SIGKILL");
    expect((await first.proc.exited).signal).toBe("SIGKILL");
    expect(await db.catalog.backup.count({ where: { jobId } })).toBe(0); // no restore point without commit

    const second = await finish(agent(vol.device, jobId, state));
    expect(second.resumedSession).toBe(true);
    // What the killed run had stored was not sent again.
    expect(second.counters.bytesSent).toBeLessThan(24 * MiB);
    expect((await restore(second.restorePointId)).equals(readFileSync(vol.device))).toBe(true);
  }, 180_000);

  it("the server SIGKILLed mid-upload and restarted: the agent reconnects, resumes and the result verifies", async () => {
    const vol = makeVolume("srvkill");
    vol.write({ "big.bin": randomBytes(24 * MiB) });
    const run = agent(vol.device, await job(), join(dir, "state-srvkill"), [
      "--bandwidth-limit",
      String(4 * MiB),
    ]);
    const deadline = Date.now() + 60_000;
    while (!/"bytesSent":\s*[1-9]\d{6,}/.test(run.proc.output())) {
      if (run.proc.child.exitCode !== null || Date.now() > deadline) throw new Error(run.proc.output());
      await new Promise((r) => setTimeout(r, 50));
    }
    server!.child.kill("SIGKILL");
    await server!.exited;
    await startServer(); // same port, database and repository
    const report = await finish(run);
    expect(report.reconnects).toBeGreaterThanOrEqual(1);
    expect(run.proc.output()).toContain("reconnecting");
    expect((await restore(report.restorePointId)).equals(readFileSync(vol.device))).toBe(true);
  }, 180_000);

  it("a TCP connection cut mid-stream is resumed and the restore point verifies", async () => {
    const vol = makeVolume("cut");
    vol.write({ "big.bin": randomBytes(24 * MiB) });
    const proxy = new TcpProxy(grpcPort);
    const port = await proxy.start();
    proxy.cutWhen = (bytes) => bytes > 8 * MiB;
    try {
      const report = await finish(agent(vol.device, await job(), join(dir, "state-cut"), [], port));
      expect(proxy.cuts).toBe(1);
      expect(report.reconnects).toBeGreaterThanOrEqual(1);
      // Everything once, plus at most what was in flight at the cut: the agent's window of groups
      // read and sent but not yet acked, each of which the server may not have stored.
      expect(report.counters.bytesSent).toBeLessThan(24 * MiB + DEFAULT_GROUPS_IN_FLIGHT * GROUP_BYTES);
      expect((await restore(report.restorePointId)).equals(readFileSync(vol.device))).toBe(true);
    } finally {
      await proxy.stop();
    }
  }, 300_000); // a cut Node's HTTP/2 session does not see is found by keepalive, within 80 s
});
