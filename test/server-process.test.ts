import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, repoRoot, runTs, waitForStatus } from "./support/processes.js";

const serverMain = join(repoRoot, "apps/server/src/main.ts");

describe("bulwark-server as a process", () => {
  let db: TestDatabase;

  beforeAll(async () => {
    // Unmigrated: the server must bring the schema up to date itself on start.
    db = await createTestDatabase("server_process", { migrate: false });
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("migrates an empty catalog, reports healthy, and stops cleanly on SIGTERM", async () => {
    const port = await freePort();
    const proc = runTs(serverMain, [], {
      DATABASE_URL: db.url,
      BULWARK_HTTP_PORT: String(port),
      // The agent and enroll listeners always run now: free ports, so parallel servers never collide.
      BULWARK_GRPC_PORT: String(await freePort()),
      BULWARK_ENROLL_PORT: String(await freePort()),
      BULWARK_NODE_NAME: "system-test",
      BULWARK_LOG_LEVEL: "info",
    });
    try {
      // Migrating an empty catalog at start-up can take a minute or more on a loaded machine.
      const res = await waitForStatus(`http://127.0.0.1:${port}/healthz`, 200, proc, 180_000);
      const body = (await res.json()) as {
        status: string;
        node: string;
        checks: Record<string, { status: string }>;
      };
      expect(body.status).toBe("ok");
      expect(body.node).toBe("system-test");
      const migrated = await db.catalog.$queryRawUnsafe<{ n: bigint }[]>(
        'SELECT count(*) AS n FROM "_prisma_migrations" WHERE finished_at IS NOT NULL',
      );
      expect(Number(migrated[0]!.n)).toBeGreaterThan(0);
    } finally {
      proc.child.kill("SIGTERM");
    }
    const { code } = await proc.exited;
    expect(code, proc.output()).toBe(0);
    expect(proc.output()).toContain("shutting down");
  }, 300_000);

  it("refuses to start on invalid configuration and names the key", async () => {
    const proc = runTs(serverMain, [], { DATABASE_URL: db.url, BULWARK_HTTP_PORT: "eighty" });
    const { code } = await proc.exited;
    expect(code).toBe(1);
    expect(proc.output()).toContain("BULWARK_CONFIG_INVALID");
    expect(proc.output()).toContain("BULWARK_HTTP_PORT / httpPort");
  }, 60_000);
});
