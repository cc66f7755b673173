// `bulwark files volume|ls|find|get` (the CLI as a child process) against a real bulwark-server on
// its own database, reading a restore point of an ext4 image built by `mke2fs -d` from a real tree
// and stored with the repository library in a repository made by `bulwark-server repo init` (so the
// server opens it with its configured secret). Downloads must equal the source bytes.

import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeRestorePoint } from "../apps/server/test/support/restore-points.js";
import { freePort, type RunningProcess, repoRoot, runTs, waitForStatus } from "./support/processes.js";

const run$ = promisify(execFile);
const serverMain = join(repoRoot, "apps/server/src/main.ts");
const cliMain = join(repoRoot, "apps/cli/src/main.ts");

/** Each CLI call is a node start-up with tsx; on a loaded machine one takes many seconds. */
const TEST_TIMEOUT_MS = 300_000;
const PASSPHRASE = "cli files e2e";
const big = randomBytes(2 * 2 ** 20 + 777);

interface CliRun {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

describe("bulwark files against a running server", () => {
  let db: TestDatabase;
  let server: RunningProcess;
  let url: string;
  let work: string;
  let tree: string;
  let backupId: string;

  async function cli(args: string[]): Promise<CliRun> {
    const proc = runTs(cliMain, args, {
      XDG_CONFIG_HOME: join(work, "home"),
      BULWARK_URL: url,
      BULWARK_TOKEN: "",
    });
    const chunks: Buffer[] = [];
    let stderr = "";
    proc.child.stdout?.on("data", (d: Buffer) => chunks.push(d));
    proc.child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const { code } = await proc.exited;
    return { code, stdout: Buffer.concat(chunks), stderr };
  }

  async function serverCommand(args: string[], env: Record<string, string>): Promise<void> {
    const proc = runTs(serverMain, args, { ...env, BULWARK_MIGRATE_ON_START: "false" });
    const done = await proc.exited;
    if (done.code !== 0) throw new Error(`bulwark-server ${args.join(" ")} failed:\n${proc.output()}`);
  }

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "bulwark-cli-files-"));
    tree = join(work, "tree");
    mkdirSync(join(tree, "etc", "app"), { recursive: true });
    writeFileSync(join(tree, "etc", "app", "app.conf"), "listen = 8080\n");
    writeFileSync(join(tree, "etc", "hosts"), "127.0.0.1 localhost\n");
    writeFileSync(join(tree, "data.bin"), big);
    symlinkSync("etc/hosts", join(tree, "hosts-link"));
    const image = join(work, "vol.img");
    await run$("mke2fs", ["-q", "-F", "-t", "ext4", "-d", tree, image, "16M"]);

    db = await createTestDatabase("clifiles");
    const passphraseFile = join(work, "repo.pass");
    writeFileSync(passphraseFile, `${PASSPHRASE}\n`, { mode: 0o600 });
    const env = {
      DATABASE_URL: db.url,
      BULWARK_REPOSITORY_PASSPHRASE_FILE: passphraseFile,
      BULWARK_DATA_DIR: join(work, "server-data"),
    };
    const location = join(work, "repo");
    await serverCommand(["repo", "init", "--location", location, "--name", "main"], env);
    const passwordFile = join(work, "admin.pw");
    writeFileSync(passwordFile, "correct horse battery\n", { mode: 0o600 });
    await serverCommand(
      ["user", "create", "--email", "admin@example.com", "--role", "admin", "--password-file", passwordFile],
      env,
    );

    // The restore point, stored the way a backup stores it, and its catalog row.
    const tenant = await db.catalog.tenant.findUniqueOrThrow({ where: { slug: "default" } });
    const repoRow = await db.catalog.repository.findFirstOrThrow({ where: { tenantId: tenant.id } });
    ({ backupId } = await storeRestorePoint(db.catalog, {
      tenantId: tenant.id,
      repositoryId: repoRow.id,
      location,
      secret: { passphrase: PASSPHRASE },
      image,
      name: "vol-root",
      hostname: "web-01",
    }));

    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    server = runTs(serverMain, [], {
      ...env,
      BULWARK_HTTP_PORT: String(port),
      BULWARK_GRPC_PORT: String(await freePort()),
      BULWARK_ENROLL_PORT: String(await freePort()),
      BULWARK_NODE_NAME: "cli-files-e2e",
    });
    await waitForStatus(`${url}/healthz`, 200, server, 90_000);
    const login = await cli(["login", "--email", "admin@example.com", "--password-file", passwordFile]);
    if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
  }, 240_000);

  afterAll(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
    await db?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it(
    "shows the volume, lists a directory with a symlink target and finds by glob",
    async () => {
      const volume = await cli(["files", "volume", backupId, "--json"]);
      expect(volume.stderr).toBe("");
      expect(volume.code).toBe(0);
      expect(JSON.parse(volume.stdout.toString())).toMatchObject({
        table: null,
        partitions: [{ number: 0, filesystem: "ext4", offset: 0 }],
      });

      const ls = await cli(["files", "ls", backupId, "/"]);
      expect(ls.stderr).toBe("");
      expect(ls.code).toBe(0);
      const text = ls.stdout.toString();
      expect(text).toMatch(/^TYPE\s+SIZE\s+MODIFIED\s+NAME$/m);
      expect(text).toMatch(/^file\s+2\.00 MiB\s+\S+ \S+\s+data\.bin$/m);
      expect(text).toMatch(/^dir\s+.*\s+etc$/m);
      expect(text).toMatch(/^link\s+.*\s+hosts-link -> etc\/hosts$/m);

      const find = await cli(["files", "find", backupId, "*.conf", "--json"]);
      expect(find.code).toBe(0);
      const found = JSON.parse(find.stdout.toString()) as { matches: { path: string }[]; truncated: boolean };
      expect(found.matches.map((m) => m.path)).toEqual(["/etc/app/app.conf"]);
      expect(found.truncated).toBe(false);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "downloads a file to disk and to stdout, byte for byte, and refuses to overwrite",
    async () => {
      const out = join(work, "data.bin");
      const get = await cli(["files", "get", backupId, "/data.bin", "-o", out, "--json"]);
      expect(get.stderr).toBe("");
      expect(get.code).toBe(0);
      expect(JSON.parse(get.stdout.toString())).toEqual({ path: "/data.bin", bytes: big.length, out });
      expect(readFileSync(out).equals(big)).toBe(true);

      const again = await cli(["files", "get", backupId, "/data.bin", "-o", out]);
      expect(again.code).toBe(4);
      expect(again.stderr).toContain("the file exists (use --force to replace it)");

      const piped = await cli(["files", "get", backupId, "/etc/hosts", "-o", "-"]);
      expect(piped.code).toBe(0);
      expect(piped.stdout.toString()).toBe("127.0.0.1 localhost\n");
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "downloads a directory as a tar that GNU tar extracts to the source files",
    async () => {
      const out = join(work, "etc.tar");
      const get = await cli(["files", "get", backupId, "/etc", "-o", out]);
      expect(get.stderr).toBe("");
      expect(get.code).toBe(0);
      const x = join(work, "untar");
      mkdirSync(x);
      await run$("tar", ["-xf", out, "-C", x]);
      const conf = readFileSync(join(x, "etc", "app", "app.conf"), "utf8");
      expect(conf).toBe("listen = 8080\n");
    },
    TEST_TIMEOUT_MS,
  );
});
