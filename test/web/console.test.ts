// The web console in a real browser (Debian's chromium through playwright-core, headless) against
// a real bulwark-server process with its own Postgres database, Redis, and a freshly built console:
// log in, enroll a real agent with a token made in the UI, back up a loop device with "Back up now",
// browse the restore point and download a file (bytes compared), restore the volume onto a second
// loop device and watch it finish (bytes compared), and check that the help desk cannot reach the
// admin pages (the navigation hides them and the server refuses the API). Then paging and filters
// kept in the address, cancelling a running (throttled) backup, retrying it, its job log, and what
// the help desk may not do with it. Screenshots of every page at 1280×720 and 1024×700 go to
// test-artifacts/console/.

import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isRoot, LoopDevices, sh } from "../../apps/agent/test/helpers/system.js";
import { freePort, type RunningProcess, repoRoot, runTs, waitForStatus } from "../support/processes.js";

const serverMain = join(repoRoot, "apps/server/src/main.ts");
const agentMain = join(repoRoot, "apps/agent/src/cli.ts");
const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = join(repoRoot, "test-artifacts/console");
const VOLUME_MIB = 32;
/** The volume whose backup is cancelled: random data, uploaded at UPLOAD_LIMIT_KIB KiB/s, runs long enough to cancel. */
const BIG_VOLUME_MIB = 48;
const BIG_FILE_MIB = 20;
const UPLOAD_LIMIT_KIB = 256;
const ADMIN = { email: "admin@example.com", password: "correct horse battery" };
const HELPDESK = { email: "desk@example.com", password: "help desk password" };
/** Backups, restores and server start-up on a machine shared with other test files. */
const FLOW_TIMEOUT_MS = 900_000;
/** How long the browser waits for a job's live state to reach SUCCEEDED. */
const JOB_WAIT_MS = 240_000;
/**
 * How long a page waits for something to appear or change. Generous: eight people share two
 * cores (load averages of 30 seen), and an enrolled agent can take minutes to show up then.
 */
const UI_WAIT_MS = 120_000;
const AGENT_WAIT_MS = 300_000;

/** expect.poll with this file's patience (vitest's default gives up after 1 s). */
function poll<T>(fn: () => T | Promise<T>, timeout = UI_WAIT_MS) {
  return expect.poll(fn, { timeout });
}

const canRun = isRoot && existsSync(CHROMIUM);

/** The machine's page fills in as the agent reports: reload until the element is there. */
async function countAfterReload(page: Page, locator: ReturnType<Page["locator"]>): Promise<number> {
  await page.reload();
  await page.locator("main h1").first().waitFor();
  return locator.count();
}

describe.skipIf(!canRun)("web console in a browser against a real server", () => {
  let db: TestDatabase;
  let work: string;
  let server: RunningProcess;
  let agent: RunningProcess | undefined;
  let url: string;
  let browser: Browser;
  let admin: BrowserContext;
  let page: Page;
  const loops = new LoopDevices();
  let sourceDevice: string;
  let targetDevice: string;
  let bigDevice: string;
  let sourceImage: string;
  /** Set by the cancel test for the help desk's check. */
  let cancelledJobId: string | undefined;
  const fileBytes = randomBytes(300_000);

  async function shot(p: Page, name: string): Promise<void> {
    await p.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  }

  function passwordFile(name: string, password: string): string {
    const path = join(work, name);
    writeFileSync(path, `${password}\n`, { mode: 0o600 });
    return path;
  }

  async function runToEnd(entry: string, args: string[], env: Record<string, string>): Promise<string> {
    const proc = runTs(entry, args, env);
    const { code } = await proc.exited;
    if (code !== 0) throw new Error(`${args.join(" ")} failed:\n${proc.output()}`);
    return proc.output();
  }

  async function login(p: Page, who: { email: string; password: string }): Promise<void> {
    await p.goto(`${url}/#/`);
    await p.getByLabel("E-mail").fill(who.email);
    await p.getByLabel("Password").fill(who.password);
    await p.getByRole("button", { name: "Log in" }).click();
    await p.getByRole("heading", { name: "Dashboard" }).waitFor();
  }

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "bulwark-web-e2e-"));
    mkdirSync(ARTIFACTS, { recursive: true });
    // A fresh console build of the sources under test (the server registers its files at start).
    const consoleDir = join(work, "console");
    const build = spawnSync(
      "pnpm",
      ["exec", "vite", "build", "--outDir", consoleDir, "--emptyOutDir", "--logLevel", "warn"],
      { cwd: join(repoRoot, "apps/web"), encoding: "utf8" },
    );
    if (build.status !== 0) throw new Error(`console build failed:\n${build.stdout}${build.stderr}`);

    db = await createTestDatabase("web_console");
    const keyFile = join(work, "repo.key");
    writeFileSync(keyFile, randomBytes(32));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const env = {
      DATABASE_URL: db.url,
      BULWARK_REPOSITORY_KEY_FILE: keyFile,
      BULWARK_DATA_DIR: join(work, "server-data"),
      BULWARK_HTTP_PORT: String(port),
      BULWARK_GRPC_PORT: String(await freePort()),
      BULWARK_ENROLL_PORT: String(await freePort()),
      BULWARK_NBD_PORT: String(await freePort()),
      BULWARK_NODE_NAME: "web-e2e",
      BULWARK_CONSOLE_DIR: consoleDir,
      // Plain HTTP on loopback: the browser keeps cookies without Secure / __Host-.
      BULWARK_HTTP_SECURE_COOKIES: "false",
    };
    const once = { ...env, BULWARK_MIGRATE_ON_START: "false" };
    await runToEnd(serverMain, ["repo", "init", "--location", join(work, "repo"), "--name", "main"], once);
    for (const [who, role] of [
      [ADMIN, "admin"],
      [HELPDESK, "helpdesk"],
    ] as const) {
      await runToEnd(
        serverMain,
        [
          "user",
          "create",
          "--email",
          who.email,
          "--role",
          role,
          "--name",
          role === "admin" ? "Ada Admin" : "Hal Helpdesk",
          "--password-file",
          passwordFile(`${role}.pw`, who.password),
        ],
        once,
      );
    }
    server = runTs(serverMain, [], env);
    await waitForStatus(`${url}/healthz`, 200, server, 120_000);

    // The volume to protect: a real ext4 on a loop device, populated with mke2fs -d.
    const tree = join(work, "tree");
    mkdirSync(join(tree, "docs/reports"), { recursive: true });
    writeFileSync(join(tree, "docs/reports/q3.bin"), fileBytes);
    writeFileSync(join(tree, "docs/readme.txt"), "hello from the restore point\n");
    sourceImage = join(work, "source.img");
    writeFileSync(sourceImage, "");
    sh("truncate", ["-s", `${VOLUME_MIB}M`, sourceImage]);
    sh("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "4096", "-d", tree, sourceImage]);
    sourceDevice = loops.attach(sourceImage);
    const targetImage = join(work, "target.img");
    writeFileSync(targetImage, "");
    sh("truncate", ["-s", `${VOLUME_MIB}M`, targetImage]);
    targetDevice = loops.attach(targetImage);
    const bigTree = join(work, "big-tree");
    mkdirSync(bigTree);
    writeFileSync(join(bigTree, "random.bin"), randomBytes(BIG_FILE_MIB * 1024 * 1024));
    const bigImage = join(work, "big.img");
    writeFileSync(bigImage, "");
    sh("truncate", ["-s", `${BIG_VOLUME_MIB}M`, bigImage]);
    sh("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "4096", "-d", bigTree, bigImage]);
    bigDevice = loops.attach(bigImage);

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    admin = await browser.newContext({ viewport: { width: 1280, height: 720 }, acceptDownloads: true });
    admin.setDefaultTimeout(UI_WAIT_MS);
    page = await admin.newPage();
  }, FLOW_TIMEOUT_MS);

  afterAll(async () => {
    await browser?.close();
    if (agent && agent.child.exitCode === null) {
      agent.child.kill("SIGTERM");
      await agent.exited;
    }
    if (server && server.child.exitCode === null) {
      server.child.kill("SIGTERM");
      await server.exited;
    }
    loops.cleanup();
    await db?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("refuses a wrong password with the server's code, then logs in", async () => {
    await page.goto(`${url}/`);
    await page.getByLabel("E-mail").fill(ADMIN.email);
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Log in" }).click();
    await poll(() => page.getByRole("alert").textContent()).toContain("BULWARK_AUTH_INVALID_CREDENTIALS");
    await shot(page, "login");
    await login(page, ADMIN);
    await page.getByText("No machines yet.").waitFor();
    await shot(page, "dashboard-empty");
  });

  it(
    "enrolls an agent, backs up a loop device, downloads a file and restores the volume",
    async ({ onTestFailed }) => {
      onTestFailed(() => shot(page, "failure"));
      // Logged in by the first test, unless this one runs alone (-t).
      await page.goto(`${url}/#/`);
      await page.locator("#login-email, .topbar").first().waitFor();
      if (await page.locator("#login-email").count()) await login(page, ADMIN);
      // A group, made on the Machines page.
      await page.goto(`${url}/#/machines`);
      await page.getByLabel("New group name").fill("lab");
      await page.getByRole("button", { name: "Create group" }).click();
      await page.getByText("Group lab created.").waitFor();

      // Policies page: create one with the schedule preview, assigned to the group.
      await page.goto(`${url}/#/policies/new`);
      await page.getByLabel("Name", { exact: true }).fill("Lab nightly");
      await page.getByLabel("Timezone (IANA name)").fill("Europe/Berlin");
      await page.getByLabel("Cron expression (minute hour day month weekday)").fill("30 1 * * *");
      await poll(() => page.locator("#runs-preview").textContent()).toMatch(/01:30/);
      await page.getByLabel("Which volumes").selectOption("devices");
      await page.getByLabel("Devices, one per line").fill(`${sourceDevice}\n${bigDevice}`);
      await page.getByLabel(/^lab/).check();
      await shot(page, "policy-new");
      await page.getByRole("button", { name: "Create policy" }).click();
      await page.getByRole("heading", { name: "Policy Lab nightly" }).waitFor();

      // Machines page: an enrollment token for the group, the install command copied from the page.
      await page.goto(`${url}/#/machines`);
      await page.getByRole("button", { name: "Enroll a machine" }).click();
      await page.getByLabel("Group").first().selectOption({ label: "lab" });
      await page.getByRole("button", { name: "Create enrollment token" }).click();
      const command = await page.getByLabel("Install command").inputValue();
      await shot(page, "machines-enroll");
      const tokenFile = /<<'BULWARK_TOKEN'\n([\s\S]*?)BULWARK_TOKEN\n/.exec(command)?.[1];
      expect(tokenFile).toBeTruthy();
      const tokenPath = join(work, "agent.token");
      writeFileSync(tokenPath, tokenFile ?? "", { mode: 0o600 });
      const stateDir = join(work, "agent-state");
      await runToEnd(agentMain, ["enroll", "--token-file", tokenPath, "--state-dir", stateDir], {});
      agent = runTs(agentMain, ["run", "--state-dir", stateDir], {});

      // The machine shows up; its page lists the loop device; "Back up now" runs a real backup.
      await page.goto(`${url}/#/machines`);
      const hostLink = page.locator("tbody a").first();
      await poll(() => countAfterReload(page, hostLink), AGENT_WAIT_MS).toBe(1);
      await shot(page, "machines");
      await hostLink.click();
      // The loop device is reported as a disk and as the volume on it: back up the volume.
      const backupNow = page
        .getByRole("row")
        .filter({ hasText: "partition" })
        .getByRole("button", { name: `Back up ${sourceDevice} now` });
      await poll(() => countAfterReload(page, backupNow), AGENT_WAIT_MS).toBe(1);
      await backupNow.click();
      await page.getByRole("heading", { name: /backup job/ }).waitFor();
      await page.locator(".job-live .state-succeeded").waitFor({ timeout: JOB_WAIT_MS });
      // The ended job is read again: no Cancel button for a finished job.
      await poll(() => page.getByRole("button", { name: "Cancel job" }).count()).toBe(0);
      await shot(page, "job-backup");

      await page.goto(`${url}/#/`);
      await page.getByText("1 restore point", { exact: false }).first().waitFor();
      await page.locator("figure.chart svg").waitFor();
      await shot(page, "dashboard");

      // Machine page with its restore point; then the restore wizard, files first.
      await page.goto(`${url}/#/machines`);
      await page.locator("tbody a").first().click();
      await page.getByRole("link", { name: "Restore from this point" }).first().waitFor();
      await shot(page, "machine");
      await page.getByRole("link", { name: "Restore from this point" }).first().click();
      await page.getByRole("link", { name: "Browse files and download some" }).click();
      await page.getByRole("button", { name: "📁 docs" }).click();
      await page.getByRole("button", { name: "📁 reports" }).click();
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.getByRole("link", { name: "Download q3.bin" }).click(),
      ]);
      const saved = join(work, "downloaded.bin");
      await download.saveAs(saved);
      expect(readFileSync(saved).equals(fileBytes)).toBe(true);
      await shot(page, "restore-files");

      // Search finds the other file too.
      await page.getByLabel("Find files by name").fill("readme");
      await page.getByRole("button", { name: "Search" }).click();
      await page.getByText("/docs/readme.txt").waitFor();

      // Whole-volume restore onto the second loop device: the button waits for the confirmation.
      await page.goto(page.url().replace("mode=files", "mode=volume"));
      await page.getByLabel("Target device or image file").fill(targetDevice);
      await page.getByLabel(/^Delta/).uncheck();
      const start = page.getByRole("button", { name: "Start restore" });
      expect(await start.isDisabled()).toBe(true);
      await page.getByLabel(/everything on .* is overwritten/).check();
      await shot(page, "restore-volume");
      await start.click();
      await page.getByRole("heading", { name: `Restoring onto ${targetDevice}` }).waitFor();
      await page.locator(".job-live .state-succeeded").waitFor({ timeout: JOB_WAIT_MS });
      await shot(page, "restore-progress");
      const restored = readFileSync(targetDevice);
      expect(restored.equals(readFileSync(sourceImage))).toBe(true);

      // Jobs page lists both jobs; Policies and Admin pages render.
      await page.goto(`${url}/#/jobs`);
      await page.locator("main tbody").getByRole("link", { name: "restore", exact: true }).waitFor();
      await shot(page, "jobs");
      await page.goto(`${url}/#/policies`);
      await page.getByRole("link", { name: "Lab nightly" }).waitFor();
      await shot(page, "policies");
      for (const tab of ["users", "tokens", "audit", "repositories"]) {
        await page.goto(`${url}/#/admin/${tab}`);
        await page.locator("main table, main .empty").first().waitFor();
        await shot(page, `admin-${tab}`);
      }
      await page.setViewportSize({ width: 1024, height: 700 });
      await page.goto(`${url}/#/`);
      await page.locator("figure.chart svg").waitFor();
      await shot(page, "dashboard-1024");
    },
    FLOW_TIMEOUT_MS,
  );

  it(
    "pages lists with Previous / Next and keeps filters and position in the address",
    async () => {
      // Two users, one per page: Next (by keyboard) moves on, the address carries the cursor.
      await page.goto(`${url}/#/admin/users?limit=1`);
      const firstCell = page.locator("main tbody tr th").first();
      await firstCell.waitFor();
      expect(await page.locator("main tbody tr").count()).toBe(1);
      const firstUser = await firstCell.textContent();
      const pager = page.getByRole("navigation", { name: "Pages of users" });
      await poll(() => pager.textContent()).toContain("more available");
      await pager.getByRole("button", { name: "Next" }).focus();
      await page.keyboard.press("Enter");
      await poll(() => firstCell.textContent()).not.toBe(firstUser);
      const secondUser = await firstCell.textContent();
      expect(page.url()).toMatch(/[?&]cursor=/);
      await poll(() => pager.textContent()).toContain("end of the list");
      expect(await pager.textContent()).toContain("page 2");
      await shot(page, "paging-users");
      const sharedLink = page.url();
      await pager.getByRole("button", { name: "Previous" }).click();
      await poll(() => firstCell.textContent()).toBe(firstUser);

      // The link opens the same page elsewhere; without this tab's history it offers the first page.
      const other = await admin.newPage();
      await other.goto(sharedLink);
      await poll(() => other.locator("main tbody tr th").first().textContent()).toBe(secondUser);
      const otherPager = other.getByRole("navigation", { name: "Pages of users" });
      await otherPager.getByRole("button", { name: "First page" }).click();
      await poll(() => other.locator("main tbody tr th").first().textContent()).toBe(firstUser);
      await other.close();

      // Filters live in the address: a reload keeps them, and choosing one writes it there.
      await page.goto(`${url}/#/admin/audit?outcome=FAILURE`);
      await page.locator("main tbody tr").first().waitFor();
      await page.reload();
      await page.locator("main tbody tr").first().waitFor();
      expect(await page.getByLabel("Outcome").inputValue()).toBe("FAILURE");
      const outcomes = await page.locator("main tbody tr td:last-child").allTextContents();
      expect(outcomes.length).toBeGreaterThan(0);
      expect(new Set(outcomes)).toEqual(new Set(["FAILURE"]));
      await page.getByLabel("Outcome").selectOption("SUCCESS");
      await poll(() => page.url()).toContain("outcome=SUCCESS");

      await page.goto(`${url}/#/machines`);
      await page.locator("main tbody a").first().waitFor();
      await page.getByLabel("Search hostname").fill("no-such-host");
      await poll(() => page.url()).toContain("search=no-such-host");
      await page.getByText("No machine matches these filters.").waitFor();
      await page.getByRole("button", { name: "Clear filters" }).click();
      await page.locator("main tbody a").first().waitFor();
      expect(page.url()).not.toContain("search=");

      // A hand-edited address with a bad filter is an error that says why, with a way out.
      await page.goto(`${url}/#/jobs?from=yesterday`);
      await poll(() => page.getByRole("alert").first().textContent()).toContain("is not a day");
      await shot(page, "jobs-bad-filter");
      await page.getByRole("button", { name: "Clear filters" }).click();
      await page.locator("main tbody a").first().waitFor();
    },
    FLOW_TIMEOUT_MS,
  );

  it(
    "cancels a running backup (no restore point), retries it and shows the job log",
    async ({ onTestFailed }) => {
      onTestFailed(() => shot(page, "failure-cancel"));
      // Throttle uploads in the policy so the random volume's backup runs long enough to cancel.
      await page.goto(`${url}/#/policies`);
      await page.getByRole("link", { name: "Lab nightly" }).click();
      await page
        .getByLabel("Upload limit per machine (KiB/s, empty for none)")
        .fill(String(UPLOAD_LIMIT_KIB));
      await page.getByRole("button", { name: "Save changes" }).click();
      await page.getByText("Saved.").waitFor();

      await page.goto(`${url}/#/machines`);
      await page.locator("main tbody a").first().click();
      const backupBig = page
        .getByRole("row")
        .filter({ hasText: "partition" })
        .getByRole("button", { name: `Back up ${bigDevice} now` });
      await poll(() => countAfterReload(page, backupBig), AGENT_WAIT_MS).toBe(1);
      await backupBig.click();
      await page.getByRole("heading", { name: /backup job/ }).waitFor();
      const jobId = /#\/jobs\/([0-9a-f-]{36})/.exec(page.url())?.[1];
      expect(jobId).toBeTruthy();
      cancelledJobId = jobId;
      await page.locator(".job-live .state-running").waitFor({ timeout: JOB_WAIT_MS });
      // Cancel asks first; "Keep it" leaves the job alone.
      await page.getByRole("button", { name: "Cancel job" }).click();
      await page.getByRole("button", { name: "Keep it" }).click();
      await page.getByRole("button", { name: "Cancel job" }).click();
      await shot(page, "job-cancel-confirm");
      await page.getByRole("button", { name: "Yes, cancel the job" }).click();
      await page.locator(".job-live .state-cancelled").waitFor({ timeout: JOB_WAIT_MS });
      await poll(() => page.getByRole("log").textContent()).toMatch(/cancel/i);
      expect(await page.getByRole("button", { name: "Cancel job" }).count()).toBe(0);
      await shot(page, "job-cancelled");

      // No restore point for the volume: over the API and on the machine's page filtered to it.
      const job = (await (await page.request.get(`${url}/api/v1/jobs/${jobId}`)).json()) as {
        agentId: string;
        params: { volumeId: string };
      };
      const volumeId = job.params.volumeId;
      const points = async () =>
        (
          (await (await page.request.get(`${url}/api/v1/backups?volumeId=${volumeId}`)).json()) as {
            items: unknown[];
          }
        ).items.length;
      expect(await points()).toBe(0);
      await page.goto(`${url}/#/machines/${job.agentId}?points-volume=${volumeId}`);
      await page.getByText("No restore point matches these filters.").waitFor();

      // Retry: a new job with the same volume, linked to the cancelled one, runs to the end.
      await page.goto(`${url}/#/jobs/${jobId}`);
      await page.getByRole("button", { name: "Retry backup" }).click();
      await poll(() => page.url()).not.toContain(jobId ?? "");
      await page.getByRole("link", { name: `job ${jobId?.slice(0, 8)}` }).waitFor();
      await page.locator(".job-live .state-succeeded").waitFor({ timeout: JOB_WAIT_MS });
      await poll(() => page.getByRole("log").textContent()).toMatch(/succeeded|finished/i);
      await shot(page, "job-retried");
      expect(await points()).toBe(1);
      await page.goto(`${url}/#/machines/${job.agentId}?points-volume=${volumeId}`);
      await page.getByRole("link", { name: "Restore from this point" }).waitFor();
    },
    FLOW_TIMEOUT_MS,
  );

  it(
    "walks every page at 1280×720 and at a laptop's 1024×700",
    async () => {
      const machineHref = await (async () => {
        await page.goto(`${url}/#/machines`);
        const link = page.locator("main tbody a").first();
        await link.waitFor();
        return link.getAttribute("href");
      })();
      const pages: [string, string][] = [
        ["dashboard", "#/"],
        ["machines", "#/machines"],
        ["machine", machineHref ?? "#/machines"],
        ["restore", "#/restore"],
        ["policies", "#/policies"],
        ["jobs", "#/jobs"],
        ["job", `#/jobs/${cancelledJobId ?? ""}`],
        ["admin-users", "#/admin/users"],
        ["admin-tokens", "#/admin/tokens"],
        ["admin-audit", "#/admin/audit"],
        ["admin-repositories", "#/admin/repositories"],
      ];
      for (const [width, height] of [
        [1280, 720],
        [1024, 700],
      ] as const) {
        await page.setViewportSize({ width, height });
        for (const [name, address] of pages) {
          await page.goto(`${url}/${address}`);
          await page.locator("main h1").first().waitFor();
          // Every loading message has gone (each one ends in data, an empty state or an error).
          await poll(() => page.locator("main .waiting").count()).toBe(0);
          // One retry for a request that hit its 15 s deadline on the loaded machine; an error that
          // stays is a failure.
          if ((await page.locator("main .error-box").count()) > 0) {
            await page.getByRole("button", { name: "Try again" }).first().click();
            await poll(() => page.locator("main .waiting").count()).toBe(0);
          }
          expect(await page.locator("main .error-box").count()).toBe(0);
          await shot(page, `${name}-${width}`);
        }
      }
      await page.setViewportSize({ width: 1280, height: 720 });
    },
    FLOW_TIMEOUT_MS,
  );

  it("help desk sees no admin pages, no cancel or retry of a backup, and the server refuses their API", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    context.setDefaultTimeout(UI_WAIT_MS);
    const desk = await context.newPage();
    await login(desk, HELPDESK);
    const nav = desk.getByRole("navigation", { name: "Main" });
    expect(await nav.getByRole("link", { name: "Restore" }).count()).toBe(1);
    expect(await nav.getByRole("link", { name: "Admin" }).count()).toBe(0);
    await desk.goto(`${url}/#/machines`);
    await desk.getByRole("heading", { name: "Machines" }).waitFor();
    expect(await desk.getByRole("button", { name: "Enroll a machine" }).count()).toBe(0);
    await desk.goto(`${url}/#/admin/users`);
    await desk.getByRole("heading", { name: "Not available" }).waitFor();
    await shot(desk, "helpdesk-admin-refused");
    const users = await desk.request.get(`${url}/api/v1/users`);
    expect(users.status()).toBe(403);
    if (cancelledJobId) {
      // A backup the help desk may not start: its page shows the job and its log, no buttons.
      await desk.goto(`${url}/#/jobs/${cancelledJobId}`);
      await desk.locator(".job-live .state-cancelled").waitFor();
      await desk.getByRole("log").waitFor();
      expect(await desk.getByRole("button", { name: /Retry|Cancel job/ }).count()).toBe(0);
      const csrf = (await context.cookies()).find((c) => c.name === "bulwark_csrf")?.value;
      expect(csrf).toBeTruthy();
      const retry = await desk.request.post(`${url}/api/v1/jobs/${cancelledJobId}/retry`, {
        headers: { "x-csrf-token": csrf ?? "" },
      });
      expect(retry.status()).toBe(403);
      // Refused for the role, not for a missing CSRF token.
      expect(JSON.stringify(await retry.json())).not.toMatch(/CSRF/);
      await shot(desk, "helpdesk-job");
    }
    await context.close();
  });
});
