import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type RunningProcess, repoRoot, runTs, waitForStatus } from "./support/processes.js";

const serverMain = join(repoRoot, "apps/server/src/main.ts");
const cliMain = join(repoRoot, "apps/cli/src/main.ts");

async function cli(args: string[]): Promise<{ code: number | null; output: string }> {
  // An empty config home: the test must not depend on the machine's ~/.config/bulwark/cli.json.
  const proc = runTs(cliMain, args, { XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), "bulwark-cli-home-")) });
  const { code } = await proc.exited;
  return { code, output: proc.output() };
}

describe("bulwark status against a running server", () => {
  let db: TestDatabase;
  let server: RunningProcess;
  let url: string;

  beforeAll(async () => {
    db = await createTestDatabase("cli_status");
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    server = runTs(serverMain, [], {
      DATABASE_URL: db.url,
      BULWARK_HTTP_PORT: String(port),
      // The agent and enroll listeners always run now: free ports, so parallel servers never collide.
      BULWARK_GRPC_PORT: String(await freePort()),
      BULWARK_ENROLL_PORT: String(await freePort()),
      BULWARK_NODE_NAME: "cli-test",
    });
    await waitForStatus(`${url}/healthz`, 200, server, 90_000);
  }, 120_000);
  afterAll(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
    await db?.drop();
  });

  it("prints the version and both services, and exits 0", async () => {
    const { code, output } = await cli(["--server", url, "status"]);
    expect(output).toMatch(/bulwark-server \d+\.\d+\.\d+ at http:\/\/127\.0\.0\.1:\d+ \(node cli-test\): ok/);
    expect(output).toMatch(/postgres\s+up/);
    expect(output).toMatch(/redis\s+up/);
    expect(code).toBe(0);
  });

  it("prints JSON with --json", async () => {
    const { code, output } = await cli(["--server", url, "--json", "status"]);
    expect(code).toBe(0);
    expect(JSON.parse(output)).toMatchObject({
      status: "ok",
      node: "cli-test",
      checks: { postgres: { status: "up" } },
    });
  });

  it("reports an unreachable server with its code and exits 3", async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const { code, output } = await cli(["--server", dead, "--json", "status"]);
    expect(code).toBe(3);
    expect(output).toContain("bulwark: BULWARK_CLI_UNREACHABLE: cannot reach");
    expect(output).toContain("ECONNREFUSED");
  });

  it("exits 2 with usage on an unknown command", async () => {
    const { code, output } = await cli(["--server", url, "frobnicate"]);
    expect(code).toBe(2);
    expect(output).toContain('bulwark: BULWARK_CLI_USAGE: unknown command "frobnicate"');
  });
});
