// The host side of a rig backup: a real bulwark-server process (own Postgres database, own
// repository, mTLS from a throwaway PKI) that the agent inside the VM reaches at 10.0.2.2, qemu's
// address for the host's loopback. Restores go through the offline repository tool.
import { createHash, randomBytes, randomUUID, X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { sh } from "../../apps/agent/test/helpers/system.js";
import { makeTestPki, type TestPki } from "../../apps/agent/test/helpers/tls.js";
import { flushPrefix } from "../../apps/server/test/support/job-agent.js";
import { freePort, type RunningProcess, repoRoot, runTs } from "../support/processes.js";
import type { RigVm } from "./vm.js";

const serverMain = join(repoRoot, "apps/server/src/main.ts");
const repoMain = join(repoRoot, "apps/repo-tool/src/main.ts");

/** The host's loopback as the guest reaches it through qemu's user networking. */
export const HOST_FROM_GUEST = "10.0.2.2";

export class RigServer {
  readonly dir: string;
  db!: TestDatabase;
  pki!: TestPki;
  grpcPort = 0;
  private server: RunningProcess | undefined;
  private tenantId = "";
  private readonly queuePrefix = `bulwark-rig-${randomUUID().slice(0, 8)}`;

  private constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "bulwark-rig-server-"));
  }

  static async start(name: string): Promise<RigServer> {
    const s = new RigServer();
    try {
      await s.setUp(name);
    } catch (err) {
      await s.stop();
      throw err;
    }
    return s;
  }

  private path(name: string): string {
    return join(this.dir, name);
  }

  private async setUp(name: string): Promise<void> {
    this.db = await createTestDatabase(name);
    writeFileSync(this.path("repo.key"), randomBytes(32));
    this.pki = makeTestPki(this.dir);
    // The test PKI's server certificate names 127.0.0.1 and localhost; the guest dials 10.0.2.2,
    // so sign the same key again with that address added.
    writeFileSync(
      this.path("server-rig.ext"),
      `subjectAltName=IP:127.0.0.1,IP:${HOST_FROM_GUEST},DNS:localhost\nextendedKeyUsage=serverAuth\n`,
    );
    sh("openssl", [
      "x509",
      "-req",
      "-in",
      this.path("server.csr"),
      "-CA",
      this.pki.caPath,
      "-CAkey",
      this.pki.caKeyPath,
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      this.path("server-rig.ext"),
      "-out",
      this.pki.serverCertPath,
    ]);
    this.grpcPort = await freePort();
    const init = runTs(serverMain, ["repo", "init", "--location", this.path("repo"), "--name", "main"], {
      DATABASE_URL: this.db.url,
      BULWARK_REPOSITORY_KEY_FILE: this.path("repo.key"),
    });
    const { code } = await init.exited;
    if (code !== 0) throw new Error(`repo init failed:\n${init.output()}`);
    const proc = runTs(serverMain, [], {
      DATABASE_URL: this.db.url,
      BULWARK_REPOSITORY_KEY_FILE: this.path("repo.key"),
      BULWARK_HTTP_PORT: String(await freePort()),
      BULWARK_GRPC_PORT: String(this.grpcPort),
      BULWARK_GRPC_TLS_CERT_FILE: this.pki.serverCertPath,
      BULWARK_GRPC_TLS_KEY_FILE: this.pki.serverKeyPath,
      BULWARK_AGENT_CA_FILE: this.pki.caPath,
      BULWARK_DATA_DIR: this.path("server-data"),
      BULWARK_ENROLL_PORT: String(await freePort()),
      BULWARK_QUEUE_PREFIX: this.queuePrefix,
    });
    this.server = proc;
    const deadline = Date.now() + 600_000;
    while (!proc.output().includes("agent listener")) {
      if (proc.child.exitCode !== null || Date.now() > deadline)
        throw new Error(`server did not start:\n${proc.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // The agent's certificate comes from the test PKI (trusted through BULWARK_AGENT_CA_FILE) and
    // is recorded against the server's own CA as an issued one, as the backup e2e test does.
    this.tenantId = (await this.db.catalog.tenant.findFirstOrThrow({ where: { slug: "default" } })).id;
    const ca = await this.db.catalog.certificateAuthority.findFirstOrThrow({ where: { retiredAt: null } });
    await this.db.catalog.agent.create({
      data: {
        id: this.pki.agentId,
        tenantId: this.tenantId,
        machineId: this.pki.agentId,
        hostname: "bulwark-rig",
        os: "linux",
        agentVersion: "0.1.0",
      },
    });
    const x509 = new X509Certificate(readFileSync(this.pki.clientCertPath));
    await this.db.catalog.agentCertificate.create({
      data: {
        serial: x509.serialNumber,
        agentId: this.pki.agentId,
        caId: ca.id,
        fingerprint: createHash("sha256").update(x509.raw).digest("hex"),
        notAfter: new Date(x509.validTo),
      },
    });
  }

  /** Copies the agent's TLS files where the guest can read them (the exchange directory). */
  agentTls(intoDir: string): { caPath: string; certPath: string; keyPath: string } {
    mkdirSync(intoDir, { recursive: true });
    const files = { caPath: "ca.pem", certPath: "cert.pem", keyPath: "key.pem" } as const;
    writeFileSync(join(intoDir, files.caPath), readFileSync(this.pki.caPath));
    writeFileSync(join(intoDir, files.certPath), readFileSync(this.pki.clientCertPath));
    writeFileSync(join(intoDir, files.keyPath), readFileSync(this.pki.clientKeyPath), { mode: 0o600 });
    return files;
  }

  /** The end of the server's output and whether it still runs, for a failed guest command's error. */
  logTail(chars = 4000): string {
    if (!this.server) return "(server not started)";
    const state =
      this.server.child.exitCode === null ? "running" : `exited with ${this.server.child.exitCode}`;
    return `bulwark-server ${state}; its last output:\n${this.server.output().slice(-chars)}`;
  }

  get guestUrl(): string {
    return `https://${HOST_FROM_GUEST}:${this.grpcPort}`;
  }

  /** A one-shot backup job (a deadline, so that a server restart waits for the agent). */
  async job(): Promise<string> {
    const deadline = new Date(Date.now() + 3_600_000).toISOString();
    const row = await this.db.catalog.job.create({
      data: {
        tenantId: this.tenantId,
        kind: "BACKUP",
        state: "RUNNING",
        idempotencyKey: randomUUID(),
        agentId: this.pki.agentId,
        params: { manual: true, deadline },
      },
    });
    return row.id;
  }

  /** A RESTORE job of a restore point for the rig's agent, as the API would queue it. */
  async restoreJob(backupId: string, targetPath: string, wholeDisk: boolean): Promise<string> {
    const row = await this.db.catalog.job.create({
      data: {
        tenantId: this.tenantId,
        kind: "RESTORE",
        state: "QUEUED",
        idempotencyKey: randomUUID(),
        agentId: this.pki.agentId,
        params: { backupId, targetPath, mode: "FULL", wholeDisk, allowForeignTarget: true },
      },
    });
    return row.id;
  }

  /** Restores a restore point through the repository with the offline tool; returns the image path. */
  async restore(restorePointId: string): Promise<string> {
    const backup = await this.db.catalog.backup.findUniqueOrThrow({ where: { id: restorePointId } });
    const out = this.path(`restored-${restorePointId}.img`);
    const cat = runTs(
      repoMain,
      ["--repo", this.path("repo"), "--key-file", this.path("repo.key"), "cat", backup.indexRef, "-o", out],
      {},
    );
    const { code } = await cat.exited;
    if (code !== 0) throw new Error(`restore failed:\n${cat.output()}`);
    return out;
  }

  async stop(): Promise<void> {
    if (this.server && this.server.child.exitCode === null) {
      this.server.child.kill("SIGTERM");
      await this.server.exited;
    }
    await this.db?.drop();
    await flushPrefix(this.queuePrefix);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A VM and a server, started side by side; if either fails the other is stopped again, so a failed
 * boot leaves no server, database or Redis keys behind.
 */
export async function startRig(
  boot: () => Promise<RigVm>,
  name: string,
): Promise<{ vm: RigVm; server: RigServer }> {
  const [vm, server] = await Promise.allSettled([boot(), RigServer.start(name)]);
  if (vm.status === "fulfilled" && server.status === "fulfilled")
    return { vm: vm.value, server: server.value };
  if (vm.status === "fulfilled") await vm.value.destroy();
  if (server.status === "fulfilled") await server.value.stop();
  throw vm.status === "rejected" ? vm.reason : (server as PromiseRejectedResult).reason;
}

/** SHA-256 of a file, hex. */
export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}
