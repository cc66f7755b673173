import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { access, mkdir, open, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { agentBytesSent, agentRestorePointId, parseVmHwm } from "../agent-report.js";
import { type CommandSpec, run } from "../exec.js";
import { applyScatteredWrites, planScatteredWrites, sha256File } from "../image.js";
import {
  cookieHeader,
  damageBlockCount,
  downloadFile,
  parseAgentRestoreReport,
  parseProcStatCpuSeconds,
} from "../restore-path.js";
import type { AgentPathStep, AgentRestoreRun } from "../results.js";
import { REPO_ROOT } from "./bulwark-repo.js";
import type { AfterRestoreContext, BackupTool, ToolContext } from "./tool.js";

/**
 * BULWARK_BENCH_AGENT_CLI runs another build of the agent, for A/B pairs against one server build
 * (e.g. a copy of apps/agent/dist made before a change; kept inside apps/agent so its packages resolve).
 */
const AGENT_CLI = process.env.BULWARK_BENCH_AGENT_CLI ?? join(REPO_ROOT, "apps", "agent", "dist", "cli.js");
const SERVER_MAIN = join(REPO_ROOT, "apps", "server", "dist", "main.js");
const REPO_TOOL = join(REPO_ROOT, "apps", "repo-tool", "dist", "main.js");
const REGISTER_AGENT = join(REPO_ROOT, "scripts", "demo", "register-agent.mjs");
const PKI_SCRIPT = join(REPO_ROOT, "scripts", "demo", "pki.sh");
/** The agent, the server and what they are built from: which code was measured. */
const MEASURED_PATHS = ["apps/agent", "apps/server", "packages"];

export interface AgentToolOptions {
  build: boolean;
  /** A Postgres URL whose user may create and drop databases (the run's catalog is made there). */
  adminDatabaseUrl: string;
  /** `--streams N` for the agent; undefined leaves the agent's default. */
  streams: number | undefined;
  /** Share of the restored target's 4 KiB blocks overwritten before the delta restore (0.01 = 1%). */
  deltaChange: number;
  /** The image's seed and fill: the single-file download picks its file from the same tree plan. */
  seed: string;
  fill: number;
  log: (line: string) => void;
}

/** `postgresql://u@h:5432/postgres` with its database replaced by `name` (query string kept). */
export function databaseUrlFor(adminUrl: string, name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A fresh, valid Postgres identifier for one run's catalog. */
export function benchDatabaseName(): string {
  return `bulwark_bench_${randomBytes(6).toString("hex")}`;
}

/**
 * The real agent → gRPC → server path: every run gets its own Postgres database (created, migrated,
 * dropped at the end, also on failure), openssl PKI, repository and `bulwark-server` on loopback
 * with mutual TLS, set up the way scripts/start does. The measured command is the agent's one-shot
 * `backup --json` under GNU time (the agent's RSS); the server's peak RSS is its VmHWM, read from
 * /proc right after each backup and reset before the next. Restore is the help desk's path: a
 * restore job through the REST API (admin session), run by `bulwark-agent restore JOB --target
 * FILE` while bulwark-server streams the point over gRPC; then (issue 6) a delta restore onto the
 * same target after scattered damage, and one file downloaded over REST timed to its first byte.
 */
export function createBulwarkAgent(ctx: ToolContext, opts: AgentToolOptions): BackupTool {
  const pki = join(ctx.dir, "pki");
  const repo = join(ctx.dir, "repository");
  const keyFile = join(ctx.dir, "repository.key");
  const stateDir = join(ctx.dir, "agent-state");
  const serverLog = join(ctx.dir, "server.log");
  let databaseName: string | undefined;
  let databaseUrl = "";
  let server: ChildProcess | undefined;
  let grpcPort = 0;
  let httpPort = 0;
  let agentId = "";
  let ticksPerSecond = 100;
  /** Cookie header and CSRF token of the bench's admin session (the help desk's REST path). */
  let session: { cookie: string; csrf: string } | undefined;
  const adminEmail = "bench-admin@bench.invalid";
  const adminPasswordFile = join(ctx.dir, "admin.password");
  const jobs = new Map<string, string>();
  const serverEnv = () => ({
    DATABASE_URL: databaseUrl,
    REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
    BULWARK_REPOSITORY_KEY_FILE: keyFile,
  });
  const psqlAdmin = (sql: string) =>
    run({ argv: ["psql", opts.adminDatabaseUrl, "-v", "ON_ERROR_STOP=1", "-qc", sql] });

  async function stopServer(): Promise<void> {
    const child = server;
    server = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  async function dropDatabase(): Promise<void> {
    const name = databaseName;
    databaseName = undefined;
    if (!name) return;
    await psqlAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch((err: unknown) =>
      opts.log(`could not drop database ${name}: ${err instanceof Error ? err.message : String(err)}`),
    );
    opts.log(`dropped database ${name}`);
  }

  async function teardown(): Promise<void> {
    await stopServer();
    await dropDatabase();
    session = undefined;
  }

  let restoreRef = "";
  let fullCpuBefore = 0;

  /** bulwark-server's CPU seconds so far (it does the server half of every restore). */
  async function serverCpuSeconds(): Promise<number> {
    const pid = server?.pid;
    if (!pid || server?.exitCode !== null) throw new Error("bulwark-server is not running");
    return parseProcStatCpuSeconds(await readFile(`/proc/${pid}/stat`, "utf8"), ticksPerSecond);
  }

  /** POST /api/v1/jobs/restore as the admin: the job the help desk starts from the console. */
  async function restoreJob(backupId: string, target: string, mode: "full" | "delta"): Promise<string> {
    if (!session) throw new Error("bulwark-agent: not logged in to bulwark-server");
    const res = await fetch(`http://127.0.0.1:${httpPort}/api/v1/jobs/restore`, {
      method: "POST",
      headers: { "content-type": "application/json", cookie: session.cookie, "x-csrf-token": session.csrf },
      body: JSON.stringify({ backupId, agentId, targetPath: target, mode, allowForeignTarget: true }),
    });
    const body = (await res.json()) as { id?: unknown };
    if (res.status !== 202 || typeof body.id !== "string")
      throw new Error(`POST /api/v1/jobs/restore answered ${res.status}: ${JSON.stringify(body)}`);
    return body.id;
  }

  /** `bulwark-agent restore JOB --target FILE` (the bare-metal / help-desk path) with --json. */
  function agentRestore(job: string, target: string, mode: "full" | "delta"): CommandSpec {
    return {
      argv: [
        "node",
        ...nodeArgs("BULWARK_BENCH_AGENT_NODE_ARGS"),
        AGENT_CLI,
        "restore",
        job,
        "--target",
        target,
        ...(mode === "delta" ? ["--delta"] : []),
        "--yes-overwrite-foreign",
        "--json",
        "--server",
        `https://127.0.0.1:${grpcPort}`,
        "--state-dir",
        stateDir,
        "--ca",
        join(pki, "ca.pem"),
        "--cert",
        join(pki, "agent.pem"),
        "--key",
        join(pki, "agent.key"),
      ],
    };
  }

  /**
   * After the full restore: scattered damage to the target, a delta restore that must bring back
   * the full restore's exact bytes, then one file over REST timed to its first and last byte.
   */
  async function restoreExtras(
    actx: AfterRestoreContext,
  ): Promise<{ run: AgentRestoreRun; commands: { deltaRestore: string; fileDownload: string } }> {
    const full = parseAgentRestoreReport(actx.restoreStdout);
    const fullServerCpu = (await serverCpuSeconds()) - fullCpuBefore;

    const size = (await stat(actx.restoredPath)).size;
    const count = damageBlockCount(size, opts.deltaChange);
    const offsets = planScatteredWrites(`${actx.seed}:delta-damage`, size, count);
    await applyScatteredWrites(actx.restoredPath, `${actx.seed}:delta-damage`, offsets);
    opts.log(`   delta: overwrote ${count} scattered 4 KiB blocks of the restored target`);
    const deltaJob = await restoreJob(restoreRef, actx.restoredPath, "delta");
    const deltaSpec = agentRestore(deltaJob, actx.restoredPath, "delta");
    const cpuBefore = await serverCpuSeconds();
    const m = await actx.measure(deltaSpec);
    const deltaServerCpu = (await serverCpuSeconds()) - cpuBefore;
    const report = parseAgentRestoreReport(m.stdout);
    const verified = (await sha256File(actx.restoredPath)) === actx.restoredSha256;
    opts.log(
      `   delta: ${m.elapsedSeconds.toFixed(2)} s, fetched ${report.bytesFetched} of ${report.volumeBytes} bytes, ` +
        (verified ? "bytes match the full restore" : "BYTES DIFFER FROM THE FULL RESTORE"),
    );

    const file = downloadFile(opts.seed, size, opts.fill);
    const expected = await imageFileSha256(actx.image, file.path, actx.scratchDir);
    const url = `http://127.0.0.1:${httpPort}/api/v1/backups/${restoreRef}/files/content?path=${encodeURIComponent(file.path)}`;
    const timing = await timedDownload(url, session!.cookie);
    const fileOk = timing.sha256 === expected && timing.bytes === file.size;
    opts.log(
      `   file ${file.path} (${file.size} bytes): first byte ${timing.firstByteSeconds.toFixed(3)} s, ` +
        `last ${timing.lastByteSeconds.toFixed(3)} s, ${fileOk ? "SHA-256 matches" : "SHA-256 DIFFERS"}`,
    );
    return {
      run: {
        full: { bytesFetched: full.bytesFetched, serverCpuSeconds: fullServerCpu },
        delta: {
          wallSeconds: m.elapsedSeconds,
          userSeconds: m.userSeconds,
          systemSeconds: m.systemSeconds,
          maxRssBytes: m.maxRssBytes,
          changedBlocks: count,
          bytesFetched: report.bytesFetched,
          volumeBytes: report.volumeBytes,
          chunksUnchanged: report.chunksUnchanged,
          serverCpuSeconds: deltaServerCpu,
          verified,
        },
        file: {
          path: file.path,
          bytes: timing.bytes,
          headersSeconds: timing.headersSeconds,
          firstByteSeconds: timing.firstByteSeconds,
          lastByteSeconds: timing.lastByteSeconds,
          verified: fileOk,
        },
      },
      commands: {
        deltaRestore: actx.show(deltaSpec),
        fileDownload: `GET /api/v1/backups/<restore point>/files/content?path=${file.path} (admin session)`,
      },
    };
  }

  return {
    id: "bulwark-agent",
    backupLabel: "bulwark-agent backup → bulwark-server",
    restoreLabel: "bulwark-agent restore ← bulwark-server",
    requirements: [
      { program: "psql", debianPackage: "postgresql-client" },
      { program: "openssl", debianPackage: "openssl" },
    ],
    async prepare() {
      if (opts.build)
        await run({
          argv: [
            "pnpm",
            "--filter",
            "@bulwark/agent...",
            "--filter",
            "@bulwark/server...",
            "--filter",
            "@bulwark/repo-tool...",
            "run",
            "build",
          ],
          cwd: REPO_ROOT,
        });
      for (const file of [AGENT_CLI, SERVER_MAIN, REPO_TOOL, REGISTER_AGENT])
        await access(file).catch(() => {
          throw new Error(`${file} is missing: run pnpm build first`);
        });
      ticksPerSecond = Number((await run({ argv: ["getconf", "CLK_TCK"] })).stdout.trim()) || 100;
      await psqlAdmin("SELECT 1").catch((err: unknown) => {
        throw new Error(
          `bulwark-agent needs Postgres at ${opts.adminDatabaseUrl} (bash scripts/services starts it): ${err instanceof Error ? err.message : String(err)}`,
        );
      });
    },
    async version() {
      const manifest = JSON.parse(
        await readFile(join(REPO_ROOT, "apps", "agent", "package.json"), "utf8"),
      ) as { version: string };
      const commit = await run({ argv: ["git", "rev-parse", "--short", "HEAD"], cwd: REPO_ROOT })
        .then((r) => r.stdout.trim())
        .catch(() => "unknown");
      const dirty = await run({
        argv: ["git", "status", "--porcelain", "--", ...MEASURED_PATHS],
        cwd: REPO_ROOT,
      })
        .then((r) => (r.stdout.trim() ? "+uncommitted" : ""))
        .catch(() => "");
      const streams = opts.streams ? `, --streams ${opts.streams}` : "";
      return `bulwark-agent + bulwark-server ${manifest.version} (git ${commit}${dirty}; gRPC over mTLS on loopback${streams})`;
    },
    async beforeInit() {
      await teardown(); // a previous run's server and database, if a run failed half-way
      databaseName = benchDatabaseName();
      databaseUrl = databaseUrlFor(opts.adminDatabaseUrl, databaseName);
      await psqlAdmin(`CREATE DATABASE ${databaseName}`);
      opts.log(`bulwark-agent: database ${databaseName}, migrating`);
      await run({ argv: ["pnpm", "db:migrate"], cwd: REPO_ROOT, env: { DATABASE_URL: databaseUrl } });
      await run({ argv: ["bash", PKI_SCRIPT, pki] });
      await writeFile(keyFile, randomBytes(32), { mode: 0o600 });
      await mkdir(stateDir, { recursive: true });
    },
    init() {
      return {
        argv: ["node", SERVER_MAIN, "repo", "init", "--location", repo, "--name", "bench"],
        env: serverEnv(),
      };
    },
    async afterInit() {
      httpPort = await freePort();
      grpcPort = await freePort();
      const logFile = await open(serverLog, "w");
      try {
        server = spawn("node", [...nodeArgs("BULWARK_BENCH_SERVER_NODE_ARGS"), SERVER_MAIN], {
          cwd: REPO_ROOT,
          env: {
            ...process.env,
            ...serverEnv(),
            BULWARK_HTTP_PORT: String(httpPort),
            BULWARK_GRPC_PORT: String(grpcPort),
            BULWARK_DATA_DIR: join(ctx.dir, "server-data"),
            BULWARK_NODE_NAME: "bench",
            BULWARK_GRPC_TLS_CERT_FILE: join(pki, "server.pem"),
            BULWARK_GRPC_TLS_KEY_FILE: join(pki, "server.key"),
            BULWARK_AGENT_CA_FILE: join(pki, "ca.pem"),
          },
          stdio: ["ignore", logFile.fd, logFile.fd],
        });
      } finally {
        await logFile.close();
      }
      const started = Date.now();
      for (;;) {
        const child = server;
        if (!child || child.exitCode !== null)
          throw new Error(`bulwark-server exited:\n${await readFile(serverLog, "utf8")}`);
        const healthy = await fetch(`http://127.0.0.1:${httpPort}/healthz`)
          .then((r) => r.ok)
          .catch(() => false);
        if (healthy && (await readFile(serverLog, "utf8")).includes("agent listener")) break;
        if (Date.now() - started > 60_000)
          throw new Error(`bulwark-server did not come up in 60 s:\n${await readFile(serverLog, "utf8")}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      opts.log(`bulwark-agent: bulwark-server pid ${server?.pid}, mTLS on 127.0.0.1:${grpcPort}`);
      // One job per backup, as the scheduler will create them (scripts/demo stands in for it).
      for (const name of ["full", "incremental"]) {
        const { stdout } = await run({
          argv: [
            "node",
            REGISTER_AGENT,
            "--ca",
            join(pki, "ca.pem"),
            "--cert",
            join(pki, "agent.pem"),
            "--hostname",
            "bulwark-bench",
          ],
          cwd: REPO_ROOT,
          env: { DATABASE_URL: databaseUrl },
        });
        jobs.set(name, stdout.trim().split("\n").pop()!.trim());
      }
      agentId = await certificateAgentId(join(pki, "agent.pem"));
      // An admin, made on the server host as an installation does, logged in over REST: restore
      // jobs and file downloads go through the API the console and the CLI use.
      await writeFile(adminPasswordFile, randomBytes(18).toString("hex"), { mode: 0o600 });
      await run({
        argv: [
          "node",
          SERVER_MAIN,
          "user",
          "create",
          "--email",
          adminEmail,
          "--role",
          "admin",
          "--password-file",
          adminPasswordFile,
        ],
        cwd: REPO_ROOT,
        env: serverEnv(),
      });
      session = await login(httpPort, adminEmail, (await readFile(adminPasswordFile, "utf8")).trim());
    },
    backup(image, name) {
      const job = jobs.get(name);
      if (!job) throw new Error(`bulwark-agent: no job for the ${name} backup`);
      return {
        argv: [
          "node",
          ...nodeArgs("BULWARK_BENCH_AGENT_NODE_ARGS"),
          AGENT_CLI,
          "backup",
          image,
          "--json",
          "--server",
          `https://127.0.0.1:${grpcPort}`,
          "--volume-key",
          "bench-image",
          "--job",
          job,
          "--state-dir",
          stateDir,
          "--ca",
          join(pki, "ca.pem"),
          "--cert",
          join(pki, "agent.pem"),
          "--key",
          join(pki, "agent.key"),
          ...(opts.streams ? ["--streams", String(opts.streams)] : []),
        ],
      };
    },
    async afterBackup(_step, backupStdout): Promise<AgentPathStep> {
      const pid = server?.pid;
      if (!pid || server?.exitCode !== null)
        throw new Error("bulwark-server is not running after the backup");
      const serverPeakRssBytes = parseVmHwm(await readFile(`/proc/${pid}/status`, "utf8"));
      // "5" resets the peak to the current RSS (Linux ≥ 4.0), so the next step reports its own peak.
      await writeFile(`/proc/${pid}/clear_refs`, "5").catch(() =>
        opts.log("bulwark-agent: could not reset the server's VmHWM; later peaks include earlier steps"),
      );
      return { bytesSent: agentBytesSent(backupStdout), serverPeakRssBytes };
    },
    // The agent reads only blocks the filesystem allocates, so free space comes back as zeros. That
    // is acceptable only if every differing block is free in the image's ext4 bitmap and zero in
    // the restore; a single allocated block that differs fails the restore.
    async explainMismatch(restoredPath, image) {
      const blocks = await differingBlocks(restoredPath, image);
      if (blocks === "size")
        return { text: "the restored file's size differs from the image's.", acceptable: false };
      if (blocks.length === 0) return { text: "", acceptable: false };
      const free = await freeExt4Blocks(image, blocks);
      const zero = await zeroBlocks(restoredPath, blocks);
      const acceptable = free === blocks.length && zero === blocks.length;
      return {
        text:
          `${blocks.length} 4 KiB blocks differ from the image; ${free} of them are free in its ext4 bitmap and ` +
          `${zero} read back as zeros (the agent backs up allocated blocks only; the scattered writes also hit free space).`,
        acceptable,
      };
    },
    async snapshotRef(_name, backupStdout) {
      const id = agentRestorePointId(backupStdout);
      if (!id) throw new Error("bulwark-agent backup --json names no restore point");
      return id;
    },
    async restore(ref, image, outDir) {
      // The target: an empty sparse file of the image's size, as a new disk would be.
      const restoredPath = join(outDir, "image.img");
      await (await open(restoredPath, "w")).close();
      await truncate(restoredPath, (await stat(image)).size);
      restoreRef = ref;
      const job = await restoreJob(ref, restoredPath, "full");
      fullCpuBefore = await serverCpuSeconds();
      return { command: agentRestore(job, restoredPath, "full"), restoredPath };
    },
    async afterRestore(actx) {
      return await restoreExtras(actx);
    },
    repositoryDirs: () => [repo],
    afterRun: teardown,
    stop: teardown,
  };
}

/**
 * Profiling aid: extra node flags from the environment for the server (BULWARK_BENCH_SERVER_NODE_ARGS)
 * or the agent, backing up and restoring (BULWARK_BENCH_AGENT_NODE_ARGS), e.g. "--cpu-prof --cpu-prof-dir=/tmp/p"
 * (node refuses --cpu-prof in NODE_OPTIONS). Space-separated; empty when unset.
 */
function nodeArgs(variable: string): string[] {
  return (process.env[variable] ?? "").split(/\s+/).filter(Boolean);
}

/** The agent ID: the CN of its certificate (as the server reads it). */
async function certificateAgentId(certPem: string): Promise<string> {
  const cert = new X509Certificate(await readFile(certPem));
  const id = /CN=([0-9a-f-]{36})/.exec(cert.subject)?.[1];
  if (!id) throw new Error(`the agent certificate's CN is not an agent ID: ${cert.subject}`);
  return id;
}

/** POST /api/v1/auth/login: the session cookie and the CSRF token state-changing calls need. */
async function login(
  port: number,
  email: string,
  password: string,
): Promise<{ cookie: string; csrf: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  const body = (await res.json()) as { csrfToken?: unknown };
  if (!res.ok || typeof body.csrfToken !== "string")
    throw new Error(`login answered ${res.status}: ${JSON.stringify(body)}`);
  return { cookie: cookieHeader(res.headers.getSetCookie()), csrf: body.csrfToken };
}

/** The SHA-256 of one file inside the ext4 image, read by debugfs (independent of Bulwark). */
async function imageFileSha256(image: string, path: string, scratch: string): Promise<string> {
  const out = join(scratch, "download-expected.bin");
  await rm(out, { force: true });
  try {
    await run({ argv: ["debugfs", "-R", `dump ${path} ${out}`, image] });
    return await sha256File(out);
  } finally {
    await rm(out, { force: true });
  }
}

/** GET `url`, hashing the body: seconds from the request to the headers, the first and the last byte. */
export async function timedDownload(
  url: string,
  cookie: string,
): Promise<{
  headersSeconds: number;
  firstByteSeconds: number;
  lastByteSeconds: number;
  bytes: number;
  sha256: string;
}> {
  const started = process.hrtime.bigint();
  const since = () => Number(process.hrtime.bigint() - started) / 1e9;
  const res = await fetch(url, { headers: { cookie } });
  const headersSeconds = since();
  if (!res.ok || !res.body) throw new Error(`GET ${url} answered ${res.status}: ${await res.text()}`);
  const hash = createHash("sha256");
  let bytes = 0;
  let firstByteSeconds: number | undefined;
  for await (const piece of res.body as AsyncIterable<Uint8Array>) {
    if (piece.length === 0) continue;
    firstByteSeconds ??= since();
    hash.update(piece);
    bytes += piece.length;
  }
  const lastByteSeconds = since();
  return {
    headersSeconds,
    firstByteSeconds: firstByteSeconds ?? lastByteSeconds,
    lastByteSeconds,
    bytes,
    sha256: hash.digest("hex"),
  };
}

/** A TCP port free on loopback right now (the OS picks it). */
async function freePort(): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      const port = typeof address === "object" && address ? address.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no free port"))));
    });
  });
}

const BLOCK = 4096;

/** Indexes of the 4 KiB blocks in which two equally long files differ, or "size". */
async function differingBlocks(a: string, b: string): Promise<number[] | "size"> {
  const [fa, fb] = [await open(a, "r"), await open(b, "r")];
  try {
    const [sa, sb] = [(await fa.stat()).size, (await fb.stat()).size];
    if (sa !== sb) return "size";
    const span = 16 * 1024 * 1024;
    const [ba, bb] = [Buffer.alloc(span), Buffer.alloc(span)];
    const out: number[] = [];
    for (let pos = 0; pos < sa; pos += span) {
      const n = (await fa.read(ba, 0, span, pos)).bytesRead;
      await fb.read(bb, 0, span, pos);
      for (let off = 0; off < n; off += BLOCK)
        if (!ba.subarray(off, off + BLOCK).equals(bb.subarray(off, off + BLOCK)))
          out.push((pos + off) / BLOCK);
    }
    return out;
  } finally {
    await fa.close();
    await fb.close();
  }
}

/** How many of `blocks` (4 KiB) are all zero in `file`. */
async function zeroBlocks(file: string, blocks: number[]): Promise<number> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(BLOCK);
    let zero = 0;
    for (const b of blocks) {
      const { bytesRead } = await fh.read(buf, 0, BLOCK, b * BLOCK);
      if (bytesRead === BLOCK && buf.every((byte) => byte === 0)) zero++;
    }
    return zero;
  } finally {
    await fh.close();
  }
}

/** How many of `blocks` (4 KiB, the bench image's ext4 block size) ext4 marks free (`debugfs testb`). */
async function freeExt4Blocks(image: string, blocks: number[]): Promise<number> {
  let free = 0;
  for (let i = 0; i < blocks.length; i += 200) {
    const script = blocks
      .slice(i, i + 200)
      .map((b) => `testb ${b}`)
      .join("\n");
    const { stdout: out } = await run({
      argv: ["bash", "-c", `debugfs -f - "$1" 2>/dev/null <<<"$2"`, "_", image, script],
    });
    free += out.split("\n").filter((l) => l.includes("not in use")).length;
  }
  return free;
}
