// The real `bulwark` CLI (a child process) against a real bulwark-server on its own database: login
// (API token stored 0600), tokens, groups, policies, agents, jobs (including watch over SSE), audit,
// repo status, with and without --json, and the error paths (403 for a helpdesk user, usage, not
// logged in, revoked token) with their exit codes.

import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type RunningProcess, repoRoot, runTs, waitForStatus } from "./support/processes.js";

const serverMain = join(repoRoot, "apps/server/src/main.ts");
const cliMain = join(repoRoot, "apps/cli/src/main.ts");

/**
 * Each CLI call is a full node start-up with tsx (about 1.5 s of CPU): on a machine loaded with
 * other test files one call can take 15 s, and a test here makes up to eight.
 */
const CLI_TEST_TIMEOUT_MS = 300_000;

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe("bulwark CLI against a running server", () => {
  let db: TestDatabase;
  let server: RunningProcess;
  let url: string;
  let work: string;
  let tenantId: string;
  const adminHome = () => join(work, "admin-home");

  /** Runs the CLI with a config home of its own (never the machine's ~/.config). */
  async function cli(
    args: string[],
    opts: { home?: string; env?: Record<string, string> } = {},
  ): Promise<CliRun> {
    const proc = runTs(cliMain, args, {
      XDG_CONFIG_HOME: opts.home ?? adminHome(),
      BULWARK_URL: url,
      BULWARK_TOKEN: "",
      ...opts.env,
    });
    let stdout = "";
    let stderr = "";
    proc.child.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    proc.child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const { code } = await proc.exited;
    return { code, stdout, stderr };
  }

  function passwordFile(name: string, password: string): string {
    const path = join(work, name);
    writeFileSync(path, `${password}\n`, { mode: 0o600 });
    return path;
  }

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "bulwark-cli-e2e-"));
    db = await createTestDatabase("cli");
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    server = runTs(serverMain, [], {
      DATABASE_URL: db.url,
      BULWARK_HTTP_PORT: String(port),
      // The agent and enroll listeners always run now: free ports, so parallel servers never collide.
      BULWARK_GRPC_PORT: String(await freePort()),
      BULWARK_ENROLL_PORT: String(await freePort()),
      BULWARK_NODE_NAME: "cli-e2e",
    });
    // The first admin, made the documented way: `bulwark-server user create` with a password file.
    const bootstrap = runTs(
      serverMain,
      [
        "user",
        "create",
        "--email",
        "admin@example.com",
        "--role",
        "admin",
        "--name",
        "Admin",
        "--password-file",
        passwordFile("bootstrap.pw", "correct horse battery"),
      ],
      { DATABASE_URL: db.url, BULWARK_MIGRATE_ON_START: "false" },
    );
    const made = await bootstrap.exited;
    if (made.code !== 0) throw new Error(`bulwark-server user create failed:\n${bootstrap.output()}`);
    tenantId = (await db.catalog.tenant.findUniqueOrThrow({ where: { slug: "default" } })).id;
    // A machine and a repository, as enrollment and `repo init` would record them.
    const agent = await db.catalog.agent.create({
      data: {
        tenantId,
        machineId: randomUUID(),
        hostname: "web-01",
        os: "linux",
        osVersion: "Debian 12",
        agentVersion: "0.1.0",
        tags: ["prod"],
        lastSeenAt: new Date(Date.now() - 90_000),
        volumes: {
          create: {
            key: "uuid-root",
            kind: "PARTITION",
            devicePath: "/dev/vda1",
            mountPoint: "/",
            fsType: "ext4",
            sizeBytes: 8n * 1024n ** 3n,
          },
        },
      },
    });
    await db.catalog.repository.create({
      data: { tenantId, name: "main", kind: "LOCAL", location: join(work, "repo"), repoUuid: randomUUID() },
    });
    await db.catalog.job.create({
      data: {
        tenantId,
        kind: "BACKUP",
        state: "FAILED",
        idempotencyKey: `cli-e2e-${randomUUID()}`,
        agentId: agent.id,
        params: { volumeKey: "uuid-root" },
        progress: 0.5,
        bytesDone: 512n * 1024n ** 2n,
        bytesTotal: 1024n ** 3n,
        errorCode: "BULWARK_JOB_DEADLINE_EXCEEDED",
        errorMessage: "no result before the deadline",
        finishedAt: new Date(),
      },
    });
    await waitForStatus(`${url}/healthz`, 200, server, 90_000);
  }, 180_000);

  afterAll(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
    await db?.drop();
  });

  it(
    "logs in with a password file and keeps only an API token, in a 0600 file",
    async () => {
      const res = await cli([
        "login",
        "--email",
        "admin@example.com",
        "--password-file",
        passwordFile("admin.pw", "correct horse battery"),
      ]);
      expect(res.stderr).toBe("");
      expect(res.code).toBe(0);
      expect(res.stdout).toContain(`logged in to ${url} as admin@example.com (ADMIN)`);
      const configPath = join(adminHome(), "bulwark", "cli.json");
      expect(statSync(configPath).mode & 0o777).toBe(0o600);
      const config = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, string>;
      expect(config.token).toMatch(/^bwk_/);
      expect(config.server).toBe(url);
      expect(res.stdout).not.toContain(config.token);
      // The console session used to mint the token was ended; only the token is left.
      const sessions = await db.catalog.session.findMany({});
      expect(sessions.every((s) => s.revokedAt !== null)).toBe(true);

      const who = await cli(["whoami", "--json"]);
      expect(who.code).toBe(0);
      expect(JSON.parse(who.stdout)).toMatchObject({
        user: { email: "admin@example.com" },
        role: "ADMIN",
        via: "api-token",
      });
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "refuses a wrong password with the server's code and exit 1",
    async () => {
      const res = await cli(
        [
          "login",
          "--email",
          "admin@example.com",
          "--password-file",
          passwordFile("wrong.pw", "not the password"),
        ],
        { home: join(work, "wrong-home") },
      );
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(/^bulwark: BULWARK_AUTH_INVALID_CREDENTIALS: /);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "manages groups and lists machines by group, tag and state",
    async () => {
      const created = await cli(["groups", "create", "web", "--description", "public web servers"]);
      expect(created.code).toBe(0);
      expect(created.stdout).toMatch(/^created group web \(/);
      expect((await cli(["groups", "add", "web", "web-01"])).code).toBe(0);

      const ls = await cli(["groups", "ls"]);
      expect(ls.code).toBe(0);
      expect(ls.stdout).toMatch(/^ID\s+NAME\s+MEMBERS\s+DESCRIPTION\n\S+\s+web\s+1\s+public web servers\n$/);

      const agents = await cli(["agents", "ls", "--group", "web", "--status", "offline"]);
      expect(agents.code).toBe(0);
      const [header, row] = agents.stdout.split("\n");
      expect(header).toMatch(/^ID\s+HOSTNAME\s+STATE\s+OS\s+AGENT\s+GROUPS\s+TAGS\s+LAST SEEN$/);
      expect(row).toMatch(
        /\sweb-01\s+offline\s+linux Debian 12\s+0\.1\.0\s+web\s+prod\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+m(\d+s)? ago\)$/,
      );

      const json = await cli(["agents", "ls", "--tag", "prod", "--json"]);
      expect(json.code).toBe(0);
      const page = JSON.parse(json.stdout) as {
        items: { hostname: string; groups: { name: string }[] }[];
        nextCursor: null;
      };
      expect(page.nextCursor).toBeNull();
      expect(page.items.map((a) => a.hostname)).toEqual(["web-01"]);
      expect(page.items[0]!.groups.map((g) => g.name)).toEqual(["web"]);

      const none = await cli(["agents", "ls", "--status", "online"]);
      expect(none.stdout.trimEnd().split("\n")[1]).toBe("(none)");

      const show = await cli(["agents", "show", "web-01"]);
      expect(show.code).toBe(0);
      expect(show.stdout).toMatch(/^hostname:\s+web-01$/m);
      expect(show.stdout).toMatch(/\/dev\/vda1\s+\/\s+ext4\s+8\.00 GiB\s+-\s+unscheduled/);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "creates policies from flags and from a YAML file and lists them",
    async () => {
      const created = await cli([
        "policies",
        "create",
        "--name",
        "nightly",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--window",
        "22:00-06:00",
        "--retention",
        "keepLast=3,daily=7",
        "--volumes",
        "all-fixed",
      ]);
      expect(created.stderr).toBe("");
      expect(created.code).toBe(0);

      const yamlPath = join(work, "weekly.yaml");
      writeFileSync(
        yamlPath,
        [
          "name: weekly",
          'scheduleCron: "0 3 * * 0"',
          "timezone: UTC",
          "retention: { weekly: 8, monthly: 6 }",
          "volumeSelector:",
          "  kind: mount-points",
          "  mountPoints: [/, /home]",
          "",
        ].join("\n"),
      );
      const fromFile = await cli(["policies", "create", "--file", yamlPath, "--json"]);
      expect(fromFile.code).toBe(0);
      expect(JSON.parse(fromFile.stdout)).toMatchObject({
        name: "weekly",
        volumeSelector: { kind: "mount-points", mountPoints: ["/", "/home"] },
        revision: 1,
      });

      const ls = await cli(["policies", "ls"]);
      expect(ls.stdout).toMatch(
        /nightly\s+yes\s+0 2 \* \* \* Europe\/Berlin\s+22:00-06:00\s+keepLast=3,daily=7\s+all-fixed\s+1/,
      );
      expect(ls.stdout).toMatch(
        /weekly\s+yes\s+0 3 \* \* 0 UTC\s+any time\s+weekly=8,monthly=6\s+mount:\/,\/home\s+1/,
      );
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "edits, assigns, unassigns and removes policies; refuses a policy that breaks the contract before sending it",
    async () => {
      const edited = await cli(["policies", "edit", "nightly", "--disable", "--retention", "daily=14"]);
      expect(edited.code).toBe(0);
      expect(edited.stdout).toMatch(/revision 2$/m);

      expect((await cli(["policies", "assign", "nightly", "--group", "web"])).code).toBe(0);
      const show = await cli(["policies", "show", "nightly"]);
      expect(show.stdout).toMatch(/^enabled:\s+no$/m);
      expect(show.stdout).toMatch(/^retention:\s+daily=14$/m);
      expect(show.stdout).toMatch(/group \S+\s+100$/m);

      expect((await cli(["policies", "unassign", "nightly", "--group", "web"])).code).toBe(0);
      expect((await cli(["policies", "rm", "weekly"])).code).toBe(0);
      const after = JSON.parse((await cli(["policies", "ls", "--json"])).stdout) as {
        items: { name: string }[];
      };
      expect(after.items.map((p) => p.name)).toEqual(["nightly"]);

      // Checked against the shared contract before anything is sent: a usage error naming the field.
      const bad = await cli([
        "policies",
        "create",
        "--name",
        "x",
        "--cron",
        "0 2 * *",
        "--timezone",
        "UTC",
        "--retention",
        "daily=1",
        "--volumes",
        "all-fixed",
      ]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/^bulwark: BULWARK_CLI_USAGE: invalid policy:\n {2}scheduleCron: /);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "creates an API token into a 0600 file, acts with its narrower role, lists and revokes it",
    async () => {
      const out = join(work, "auditor.token");
      const created = await cli([
        "tokens",
        "api",
        "create",
        "reports",
        "--role",
        "auditor",
        "--ttl",
        "30d",
        "--out",
        out,
      ]);
      expect(created.code).toBe(0);
      expect(statSync(out).mode & 0o777).toBe(0o600);
      const token = readFileSync(out, "utf8").trim();
      expect(token).toMatch(/^bwk_/);
      expect(created.stdout).not.toContain(token);

      const who = await cli(["--token-file", out, "whoami"]);
      expect(who.code).toBe(0);
      expect(who.stdout).toMatch(/^role:\s+AUDITOR \(token; the account is ADMIN\)$/m);

      const ls = await cli(["tokens", "api", "ls", "--json"]);
      const tokens = JSON.parse(ls.stdout) as { items: { id: string; name: string; role: string | null }[] };
      const reports = tokens.items.find((t) => t.name === "reports");
      expect(reports?.role).toBe("AUDITOR");
      expect(ls.stdout).not.toContain(token);

      expect((await cli(["tokens", "api", "revoke", reports!.id])).code).toBe(0);
      const refused = await cli(["--token-file", out, "whoami"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^bulwark: BULWARK_AUTH_UNAUTHENTICATED: /);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "lists and shows jobs, and watches a finished one to its end over SSE (exit 5 for a failed job)",
    async () => {
      const ls = await cli(["jobs", "ls"]);
      expect(ls.code).toBe(0);
      expect(ls.stdout).toMatch(/\sBACKUP\s+FAILED\s+50\.0%\s+\S+\s+.+BULWARK_JOB_DEADLINE_EXCEEDED\n$/);
      const page = JSON.parse((await cli(["jobs", "ls", "--state", "failed", "--json"])).stdout) as {
        items: { id: string; state: string }[];
      };
      expect(page.items).toHaveLength(1);
      const id = page.items[0]!.id;

      const watch = await cli(["jobs", "watch", id]);
      expect(watch.code).toBe(5);
      expect(watch.stdout).toBe(
        `job ${id} FAILED 50.0% 512 MiB / 1.00 GiB  BULWARK_JOB_DEADLINE_EXCEEDED: no result before the deadline\n`,
      );
      expect(watch.stderr).toContain(`bulwark: BULWARK_CLI_JOB_FAILED: job ${id} ended FAILED`);

      const lines = (await cli(["jobs", "watch", id, "--json"])).stdout.trimEnd().split("\n");
      expect(lines.map((l) => JSON.parse(l).event)).toEqual(["progress", "end"]);
      expect(JSON.parse(lines[0]!)).toMatchObject({ id, state: "FAILED", bytesTotal: 1024 ** 3 });
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "follows a live job over SSE as its row changes, to exit 0 when it succeeds",
    async () => {
      const job = await db.catalog.job.create({
        data: {
          tenantId,
          kind: "VERIFY",
          idempotencyKey: `cli-e2e-${randomUUID()}`,
          params: {},
          bytesTotal: 4096n,
        },
      });
      const proc = runTs(cliMain, ["jobs", "watch", job.id, "--json"], {
        XDG_CONFIG_HOME: adminHome(),
        BULWARK_URL: url,
        BULWARK_TOKEN: "",
      });
      const waitFor = async (text: string) => {
        const deadline = Date.now() + 60_000;
        while (!proc.output().includes(text)) {
          if (Date.now() > deadline || proc.child.exitCode !== null)
            throw new Error(`no ${text} in:\n${proc.output()}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      await waitFor('"state":"QUEUED"');
      await db.catalog.job.update({
        where: { id: job.id },
        data: { state: "RUNNING", startedAt: new Date(), bytesDone: 1024n, progress: 0.25 },
      });
      await waitFor('"state":"RUNNING"');
      await db.catalog.job.update({
        where: { id: job.id },
        data: { state: "SUCCEEDED", finishedAt: new Date(), bytesDone: 4096n, progress: 1 },
      });
      const { code } = await proc.exited;
      expect(code).toBe(0);
      const events = proc
        .output()
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l) as { event: string; state: string; bytesDone?: number });
      expect(events.map((e) => [e.event, e.state, e.bytesDone])).toEqual([
        ["progress", "QUEUED", 0],
        ["progress", "RUNNING", 1024],
        ["progress", "SUCCEEDED", 4096],
        ["end", "SUCCEEDED", undefined],
      ]);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "shows the audit log and repository status, with and without --json",
    async () => {
      const audit = await cli(["audit", "ls", "--action", "auth.", "--since", "1h"]);
      expect(audit.code).toBe(0);
      expect(audit.stdout).toMatch(/^AT\s+ACTION\s+OUTCOME\s+ACTOR\s+TARGET\s+IP$/m);
      expect(audit.stdout).toMatch(/auth\.login\s+SUCCESS\s+user admin@example\.com/);
      expect(audit.stdout).toMatch(/auth\.login\s+FAILURE\s+user admin@example\.com/);
      const json = JSON.parse((await cli(["audit", "ls", "--action", "policy.", "--json"])).stdout) as {
        items: { action: string }[];
      };
      expect(json.items.length).toBeGreaterThan(0);
      expect(json.items.every((e) => e.action.startsWith("policy."))).toBe(true);

      const repo = await cli(["repo", "status"]);
      expect(repo.code).toBe(0);
      expect(repo.stdout).toMatch(/^repository:\s+main \(/m);
      expect(repo.stdout).toMatch(/^last verify:\s+never$/m);
      expect(JSON.parse((await cli(["repo", "status", "--json"])).stdout).items[0]).toMatchObject({
        name: "main",
        chunkCount: 0,
      });
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "gives a helpdesk user 403 on users create (exit 1, the server's code on stderr)",
    async () => {
      const created = await cli([
        "users",
        "create",
        "--email",
        "help@example.com",
        "--name",
        "Help Desk",
        "--role",
        "helpdesk",
        "--password-file",
        passwordFile("help.pw", "helpdesk password 1"),
      ]);
      expect(created.code).toBe(0);
      expect(created.stdout).toMatch(/^created HELPDESK help@example\.com \(/);

      const helpHome = join(work, "help-home");
      const login = await cli(
        ["login", "--email", "help@example.com", "--password-file", join(work, "help.pw")],
        { home: helpHome },
      );
      expect(login.code).toBe(0);
      const denied = await cli(
        [
          "users",
          "create",
          "--email",
          "x@example.com",
          "--role",
          "admin",
          "--password-file",
          join(work, "help.pw"),
          "--json",
        ],
        { home: helpHome },
      );
      expect(denied.code).toBe(1);
      expect(denied.stderr).toMatch(/^bulwark: BULWARK_AUTH_FORBIDDEN: /);
      expect(JSON.parse(denied.stdout)).toMatchObject({ error: { code: "BULWARK_AUTH_FORBIDDEN" } });
      // Reading machines is allowed for helpdesk.
      expect((await cli(["agents", "ls"], { home: helpHome })).code).toBe(0);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "exits 2 on usage errors, 4 without a login, 3 when the server is unreachable",
    async () => {
      const usage = await cli(["agents", "ls", "--status", "sideways"]);
      expect(usage.code).toBe(2);
      expect(usage.stderr).toMatch(
        /^bulwark: BULWARK_CLI_USAGE: --status "sideways": expected one of online, offline, revoked/,
      );
      const noLogin = await cli(["agents", "ls"], { home: join(work, "empty-home") });
      expect(noLogin.code).toBe(4);
      expect(noLogin.stderr).toMatch(/^bulwark: BULWARK_CLI_NOT_LOGGED_IN: /);
      const dead = await cli(["agents", "ls"], {
        env: { BULWARK_URL: `http://127.0.0.1:${await freePort()}` },
      });
      expect(dead.code).toBe(3);
      expect(dead.stderr).toMatch(/^bulwark: BULWARK_CLI_UNREACHABLE: cannot reach .*ECONNREFUSED/);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "cancels a queued job, reads its log, retries it and follows the retry's log to its end",
    async () => {
      const repo = await db.catalog.repository.findFirstOrThrow({ where: { tenantId } });
      const job = await db.catalog.job.create({
        data: {
          tenantId,
          kind: "VERIFY",
          idempotencyKey: `cli-e2e-${randomUUID()}`,
          params: { repositoryId: repo.id },
          maxAttempts: 1,
        },
      });
      const cancel = await cli(["jobs", "cancel", job.id, "--json"]);
      expect(cancel.code).toBe(0);
      expect(JSON.parse(cancel.stdout)).toMatchObject({
        id: job.id,
        state: "CANCELLED",
        errorCode: "BULWARK_CONTROL_JOB_CANCELLED",
      });
      const twice = await cli(["jobs", "cancel", job.id]);
      expect([twice.code, twice.stdout]).toEqual([0, `job ${job.id} is CANCELLED\n`]);

      const log = await cli(["jobs", "log", job.id]);
      expect(log.code).toBe(0);
      const lines = log.stdout.trimEnd().split("\n");
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(/ WARN +cancel requested by admin@/);
      expect(lines[1]).toMatch(
        / WARN +job cancelled: cancelled by admin@.*\[BULWARK_CONTROL_JOB_CANCELLED\]$/,
      );

      const retry = await cli(["jobs", "retry", job.id, "--json"]);
      expect(retry.code).toBe(0);
      const fresh = JSON.parse(retry.stdout) as { id: string; retryOfId: string; kind: string };
      expect(fresh).toMatchObject({ kind: "VERIFY", retryOfId: job.id });
      // The server's worker runs it (this repository was never initialised, so verify fails);
      // --follow prints each line as JSON until the job has ended and its log is read.
      const follow = await cli(["jobs", "log", fresh.id, "--follow", "--json"]);
      expect(follow.code).toBe(0);
      const events = follow.stdout
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l) as { event: string; data: Record<string, unknown> | null });
      expect(events[0]).toMatchObject({ event: "created", data: { retryOf: job.id } });
      expect(events.at(-1)!.event).toBe("finished");
      expect((await db.catalog.job.findUniqueOrThrow({ where: { id: fresh.id } })).state).toBe("FAILED");

      const done = await cli(["jobs", "cancel", fresh.id]);
      expect(done.code).not.toBe(0);
      expect(done.stderr).toMatch(/^bulwark: BULWARK_JOB_ALREADY_FINISHED: /);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "logs out: the token is revoked on the server and gone from the config file",
    async () => {
      const configPath = join(adminHome(), "bulwark", "cli.json");
      const { tokenId } = JSON.parse(readFileSync(configPath, "utf8")) as { tokenId: string };
      const res = await cli(["logout"]);
      expect(res.code).toBe(0);
      expect(JSON.parse(readFileSync(configPath, "utf8"))).toEqual({ server: url });
      const row = await db.catalog.apiToken.findUnique({ where: { id: tokenId } });
      expect(row?.revokedAt).not.toBeNull();
      expect((await cli(["whoami"])).code).toBe(4);
    },
    CLI_TEST_TIMEOUT_MS,
  );
});
