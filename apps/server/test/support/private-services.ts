import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

// A private redis-server and a private Postgres cluster for tests that restart them: the shared
// 127.0.0.1:6379 and :5432 serve every other engineer and test file, so those are never touched.
// Both listen on loopback on a free port and keep no data on disk beyond a temporary directory.

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > until) throw new Error(`${what} did not come up within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.setTimeout(1_000);
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (d) => {
      socket.destroy();
      resolve(d.toString().startsWith("+PONG"));
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** redis-server without persistence: a restart loses every key, as a crashed cache node would. */
export class PrivateRedis {
  private child: ChildProcess | undefined;
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(
      "redis-server",
      ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { stdio: "ignore" },
    );
    this.child = child;
    await waitFor(`redis-server on ${this.port}`, () => redisPing(this.port));
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }

  async restart(downMs = 1_000): Promise<void> {
    await this.stop();
    await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }
}

const PG_BIN = "/usr/lib/postgresql/15/bin";

/** A Postgres 15 cluster of its own (initdb in a temporary directory, run as the postgres user). */
export class PrivatePostgres {
  readonly dir: string;
  private readonly data: string;
  private readonly sockets: string;

  constructor(readonly port: number) {
    this.dir = mkdtempSync(join(tmpdir(), "bulwark-pg-"));
    this.data = join(this.dir, "data");
    this.sockets = join(this.dir, "sock");
    mkdirSync(this.sockets);
    chmodSync(this.dir, 0o755);
    const ids = execFileSync("id", ["-u", "postgres"]).toString().trim();
    const gid = execFileSync("id", ["-g", "postgres"]).toString().trim();
    chownSync(this.dir, Number(ids), Number(gid));
    chownSync(this.sockets, Number(ids), Number(gid));
  }

  get url(): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/postgres`;
  }

  private asPostgres(cmd: string, args: string[]): void {
    execFileSync("runuser", ["-u", "postgres", "--", join(PG_BIN, cmd), ...args], {
      stdio: "pipe",
      cwd: this.dir,
    });
  }

  async init(): Promise<void> {
    this.asPostgres("initdb", ["-D", this.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
    await this.start();
  }

  async start(): Promise<void> {
    const opts = `-p ${this.port} -k ${this.sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`;
    this.asPostgres("pg_ctl", ["-D", this.data, "-o", opts, "-l", join(this.dir, "log"), "-w", "start"]);
    await waitFor(`postgres on ${this.port}`, async () => {
      execFileSync(join(PG_BIN, "pg_isready"), ["-q", "-h", "127.0.0.1", "-p", String(this.port)]);
      return true;
    });
  }

  /** `fast` ends every session at once, as a restarted database server does to its clients. */
  async stop(mode: "fast" | "immediate" = "fast"): Promise<void> {
    this.asPostgres("pg_ctl", ["-D", this.data, "-m", mode, "-w", "stop"]);
  }

  async restart(downMs = 1_000): Promise<void> {
    await this.stop();
    await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }

  async destroy(): Promise<void> {
    try {
      await this.stop("immediate");
    } catch {
      // already stopped
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
