import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type RunningProcess, repoRoot, runTs } from "./support/processes.js";

// The bootstrap path as an admin runs it, every piece a real process: bulwark-server started
// without any TLS files (its CA is created in the catalog and issues the listeners' certificate),
// `bulwark-server token create` writing a token file, `bulwark-agent enroll` reading it, then
// `bulwark-agent renew --force` over the agent listener with the enrolled certificate.

const serverMain = join(repoRoot, "apps/server/src/main.ts");
const agentMain = join(repoRoot, "apps/agent/src/cli.ts");

let db: TestDatabase;
let dir: string;
let env: Record<string, string>;
let server: RunningProcess | undefined;

async function finished(proc: RunningProcess): Promise<{ code: number | null; output: string }> {
  const { code } = await proc.exited;
  return { code, output: proc.output() };
}

beforeAll(async () => {
  db = await createTestDatabase("enrollment_process", { migrate: false });
  dir = mkdtempSync(join(tmpdir(), "bulwark-enroll-proc-"));
  writeFileSync(join(dir, "repo.key"), randomBytes(32));
  env = {
    DATABASE_URL: db.url,
    BULWARK_REPOSITORY_KEY_FILE: join(dir, "repo.key"),
    BULWARK_DATA_DIR: join(dir, "server-data"),
    BULWARK_HTTP_PORT: String(await freePort()),
    BULWARK_GRPC_PORT: String(await freePort()),
    BULWARK_ENROLL_PORT: String(await freePort()),
    BULWARK_NBD_PORT: String(await freePort()),
    BULWARK_LOG_LEVEL: "info",
  };
});

afterAll(async () => {
  if (server && server.child.exitCode === null) {
    server.child.kill("SIGTERM");
    await server.exited;
  }
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("enrollment through the binaries", () => {
  it("token create → agent enroll → renew, against a server without TLS files", async () => {
    server = runTs(serverMain, [], env);
    // Start-up migrates the catalog and creates the CA: a minute or more on a loaded machine. A
    // wait that runs out says so, instead of falling through to a confusing assertion.
    const deadline = Date.now() + 180_000;
    while (!server.output().includes("enroll listener (gRPC, TLS) listening")) {
      if (server.child.exitCode !== null) throw new Error(server.output());
      if (Date.now() > deadline) throw new Error(`no enroll listener after 180 s:\n${server.output()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(server.output()).toContain("server CA ready");
    const caKeyFile = join(dir, "server-data", "ca.key");
    expect(statSync(caKeyFile).mode & 0o777).toBe(0o600);

    const tokenPath = join(dir, "agent.token");
    const created = await finished(
      runTs(
        serverMain,
        ["token", "create", "--group", "laptops", "--tag", "site:hq", "--ttl", "1h", "--out", tokenPath],
        env,
      ),
    );
    expect(created.code, created.output).toBe(0);
    expect(created.output).toContain(`written to ${tokenPath} (mode 0600)`);
    expect(statSync(tokenPath).mode & 0o777).toBe(0o600);
    const tokenFile = JSON.parse(readFileSync(tokenPath, "utf8")) as { token: string; enrollAddress: string };
    expect(created.output).not.toContain(tokenFile.token);
    expect(tokenFile.enrollAddress).toBe(`127.0.0.1:${env.BULWARK_ENROLL_PORT}`);

    const stateDir = join(dir, "agent-state");
    const enrolled = await finished(
      runTs(agentMain, ["enroll", "--token-file", tokenPath, "--state-dir", stateDir, "--json"], {}),
    );
    expect(enrolled.code, enrolled.output).toBe(0);
    const summary = JSON.parse(enrolled.output.slice(enrolled.output.indexOf("{"))) as {
      agentId: string;
      agentAddress: string;
    };
    expect(summary.agentAddress).toBe(`127.0.0.1:${env.BULWARK_GRPC_PORT}`);
    const agent = await db.catalog.agent.findUniqueOrThrow({
      where: { id: summary.agentId },
      include: { groups: { include: { group: true } } },
    });
    expect(agent.tags).toEqual(["site:hq"]);
    expect(agent.groups.map((g) => g.group.name)).toEqual(["laptops"]);

    const again = await finished(
      runTs(agentMain, ["enroll", "--token-file", tokenPath, "--state-dir", join(dir, "other-state")], {}),
    );
    expect(again.code).toBe(1);
    expect(again.output).toContain("BULWARK_ENROLL_TOKEN_USED");

    const renewed = await finished(
      runTs(agentMain, ["renew", "--force", "--state-dir", stateDir, "--json"], {}),
    );
    expect(renewed.code, renewed.output).toBe(0);
    expect(renewed.output).toContain('"renewed": true');
    expect(await db.catalog.agentCertificate.count({ where: { agentId: summary.agentId } })).toBe(2);

    const listed = await finished(runTs(serverMain, ["token", "list"], env));
    expect(listed.code, listed.output).toBe(0);
    expect(listed.output).toMatch(/ used +expires .* agent /);

    server.child.kill("SIGTERM");
    expect((await server.exited).code, server.output()).toBe(0);
  }, 300_000);
});
