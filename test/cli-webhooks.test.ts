// Signed webhook alerts through the real processes: a bulwark-server (its own database, the
// shared Redis under its own queue prefix) and the real `bulwark` CLI. The receiver is a plain
// HTTP server here that checks Bulwark-Signature on its own (HMAC-SHA256 over "<t>.<body>", as
// docs/alerts.md tells receivers), independent of the server's code. Covers the CLI commands with
// --json and --out, a refused test, and an alert the running server sends by itself for a failed
// backup job (the server's own sweep and delivery worker).

import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type RunningProcess, repoRoot, runTs, waitForStatus } from "./support/processes.js";

const serverMain = join(repoRoot, "apps/server/src/main.ts");
const cliMain = join(repoRoot, "apps/cli/src/main.ts");
const TIMEOUT = 300_000;

interface Received {
  event: string | undefined;
  delivery: string | undefined;
  signature: string;
  body: string;
}

/** The receiver's check from docs/alerts.md, written from the spec alone. */
function signatureValid(secret: string, header: string, body: string): boolean {
  const parts = new Map(header.split(",").map((p) => p.split("=", 2) as [string, string]));
  const t = parts.get("t");
  const v1 = parts.get("v1");
  if (!t || !v1 || !/^[0-9a-f]{64}$/.test(v1)) return false;
  if (Math.abs(Date.now() / 1000 - Number(t)) > 300) return false;
  const mac = createHmac("sha256", secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(mac, Buffer.from(v1, "hex"));
}

describe("bulwark webhooks against a running server", () => {
  let db: TestDatabase;
  let server: RunningProcess;
  let url: string;
  let work: string;
  let receiver: Server;
  let hook: string;
  const received: Received[] = [];
  let answer = 200;

  async function cli(args: string[]) {
    const proc = runTs(cliMain, args, {
      XDG_CONFIG_HOME: join(work, "home"),
      BULWARK_URL: url,
      BULWARK_TOKEN: "",
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

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "bulwark-webhooks-e2e-"));
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        received.push({
          event: req.headers["bulwark-event"] as string | undefined,
          delivery: req.headers["bulwark-delivery"] as string | undefined,
          signature: String(req.headers["bulwark-signature"] ?? ""),
          body: Buffer.concat(chunks).toString("utf8"),
        });
        res.writeHead(answer).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/bulwark`;

    db = await createTestDatabase("cli_webhooks");
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    server = runTs(serverMain, [], {
      DATABASE_URL: db.url,
      BULWARK_HTTP_PORT: String(port),
      BULWARK_GRPC_PORT: String(await freePort()),
      BULWARK_ENROLL_PORT: String(await freePort()),
      BULWARK_NODE_NAME: "webhooks-e2e",
      BULWARK_DATA_DIR: join(work, "data"),
      BULWARK_PUBLIC_URL: "https://console.example.test",
    });
    const pw = join(work, "admin.pw");
    writeFileSync(pw, "correct horse battery\n", { mode: 0o600 });
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
        pw,
      ],
      { DATABASE_URL: db.url, BULWARK_MIGRATE_ON_START: "false" },
    );
    if ((await bootstrap.exited).code !== 0) throw new Error(`user create failed:\n${bootstrap.output()}`);
    await waitForStatus(`${url}/healthz`, 200, server, 90_000);
    const login = await cli(["login", "--email", "admin@example.com", "--password-file", pw]);
    if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
  }, 240_000);

  afterAll(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
    await db?.drop();
    receiver?.closeAllConnections();
    await new Promise((r) => receiver?.close(r));
  });

  it(
    "creates an endpoint (secret only in the 0600 file), tests it, lists deliveries, gets a real alert and deletes it",
    async () => {
      const out = join(work, "oncall.secret");
      const created = await cli(["webhooks", "create", "oncall", hook, "--out", out, "--json"]);
      expect(created.stderr).toBe("");
      expect(created.code).toBe(0);
      const secret = readFileSync(out, "utf8").trim();
      expect(secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
      expect(statSync(out).mode & 0o777).toBe(0o600);
      expect(created.stdout).not.toContain(secret);
      expect(JSON.parse(created.stdout)).toMatchObject({
        webhook: { name: "oncall", url: hook, enabled: true },
      });

      const listed = await cli(["webhooks", "ls", "--json"]);
      expect(listed.code).toBe(0);
      expect(JSON.parse(listed.stdout).items.map((w: { name: string }) => w.name)).toEqual(["oncall"]);
      expect(listed.stdout).not.toContain(secret);

      const tested = await cli(["webhooks", "test", "oncall", "--json"]);
      expect(tested.stderr).toBe("");
      expect(tested.code).toBe(0);
      const ping = received.find((r) => r.event === "ping")!;
      expect(ping.delivery).toBe(JSON.parse(tested.stdout).delivery.id);
      expect(signatureValid(secret, ping.signature, ping.body)).toBe(true);
      expect(signatureValid(`${secret}x`, ping.signature, ping.body)).toBe(false);

      answer = 500;
      const refused = await cli(["webhooks", "test", "oncall"]);
      answer = 200;
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/BULWARK_ALERT_DELIVERY_FAILED/);

      // A backup job that failed: the server's own sweep finds it and delivers a signed alert.
      const tenant = await db.catalog.tenant.findUniqueOrThrow({ where: { slug: "default" } });
      const job = await db.catalog.job.create({
        data: {
          tenantId: tenant.id,
          kind: "BACKUP",
          state: "FAILED",
          idempotencyKey: `webhooks-e2e-${randomUUID()}`,
          params: {},
          errorCode: "BULWARK_JOB_DEADLINE_EXCEEDED",
          errorMessage: "no result before the deadline",
          finishedAt: new Date(Date.now() + 1_000),
        },
      });
      const until = Date.now() + 120_000;
      while (!received.some((r) => r.event === "backup.failed") && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 500));
      }
      const alert = received.find((r) => r.event === "backup.failed");
      expect(alert, "no backup.failed alert from the server").toBeDefined();
      expect(signatureValid(secret, alert!.signature, alert!.body)).toBe(true);
      expect(JSON.parse(alert!.body)).toMatchObject({
        version: 1,
        event: "backup.failed",
        job: { id: job.id, errorCode: "BULWARK_JOB_DEADLINE_EXCEEDED" },
        links: { job: `https://console.example.test/#/jobs/${job.id}` },
      });

      const deliveries = await cli(["webhooks", "deliveries", "oncall", "--json"]);
      expect(deliveries.code).toBe(0);
      const states = JSON.parse(deliveries.stdout).items.map((d: { event: string; state: string }) => [
        d.event,
        d.state,
      ]);
      expect(states).toEqual(
        expect.arrayContaining([
          ["ping", "DELIVERED"],
          ["ping", "FAILED"],
        ]),
      );

      expect((await cli(["webhooks", "rm", "oncall"])).code).not.toBe(0); // --yes is required
      const removed = await cli(["webhooks", "rm", "oncall", "--yes", "--json"]);
      expect(removed.code).toBe(0);
      expect(JSON.parse((await cli(["webhooks", "ls", "--json"])).stdout).items).toEqual([]);
    },
    TIMEOUT,
  );
});
