import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { userCommand } from "../src/auth/user-cli.js";
import { type ApiHarness, startApiHarness } from "./support/api.js";

// `bulwark-server user create` as a real process against a real catalog, then a login through
// the REST API with the password it was given.

const serverMain = fileURLToPath(new URL("../src/main.ts", import.meta.url));
const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));

function runServer(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", serverMain, ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.once("exit", (code) => resolve({ code, output }));
  });
}

let h: ApiHarness;
let dir: string;
beforeAll(async () => {
  h = await startApiHarness("usercli");
  dir = mkdtempSync(join(tmpdir(), "bulwark-user-cli-"));
});
afterAll(async () => {
  await h?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("bulwark-server user create", () => {
  it("creates the first admin from a password file; that admin can log in and is audited", async () => {
    const passwordFile = join(dir, "pw");
    writeFileSync(passwordFile, "first admin password 1\n", { mode: 0o600 });
    const env = { DATABASE_URL: h.db.url, BULWARK_MIGRATE_ON_START: "false" };
    const run = await runServer(
      ["user", "create", "--email", "Root@Example.TEST", "--role", "admin", "--password-file", passwordFile],
      env,
    );
    expect(run.output).toMatch(/created admin root@example\.test \([0-9a-f-]{36}\)/);
    expect(run.code).toBe(0);
    expect(run.output).not.toContain("first admin password");

    const login = await h.app.inject({
      method: "POST",
      url: "/api/v1/auth/login",
      payload: { email: "root@example.test", password: "first admin password 1" },
    });
    expect(login.statusCode).toBe(200);
    expect(login.json().user.role).toBe("ADMIN");
    const audit = await h.db.catalog.auditEvent.findFirstOrThrow({ where: { action: "user.create" } });
    expect(audit).toMatchObject({ actorType: "SYSTEM", targetId: login.json().user.id, outcome: "SUCCESS" });

    const again = await runServer(
      ["user", "create", "--email", "root@example.test", "--role", "admin", "--password-file", passwordFile],
      env,
    );
    expect(again.code).toBe(1);
    expect(again.output).toContain("BULWARK_API_CONFLICT");
  }, 240_000); // two server processes compiled from TypeScript on a shared, loaded machine

  it("refuses bad input with the usage text", async () => {
    const short = join(dir, "short");
    writeFileSync(short, "tiny\n");
    const good = join(dir, "good");
    writeFileSync(good, "long enough password");
    const cases: [string[], RegExp][] = [
      [
        ["create", "--email", "x@example.test", "--role", "admin", "--password-file", short],
        /12 to 1024 characters/,
      ],
      [["create", "--email", "x@example.test", "--role", "root", "--password-file", good], /--role must be/],
      [["create", "--email", "not-an-address", "--role", "admin", "--password-file", good], /--email/],
      [["create", "--email", "x@example.test", "--role", "admin"], /--password-file is required/],
      [
        ["create", "--email", "x@example.test", "--role", "admin", "--password", "inline"],
        /Unknown option '--password'/,
      ],
      [
        ["create", "--email", "x@example.test", "--role", "admin", "--password-file", join(dir, "none")],
        /ENOENT/,
      ],
      [["delete"], /unknown command user delete/],
    ];
    for (const [args, message] of cases) {
      const err = await userCommand(args, h.db.catalog).then(
        () => undefined,
        (e: unknown) => e as Error & { code?: string },
      );
      expect(err?.code, args.join(" ")).toBe("BULWARK_GENERAL_VALIDATION");
      expect(err?.message).toMatch(message);
      expect(err?.message).toContain("usage: bulwark-server user create");
    }
    expect(await h.db.catalog.user.count({ where: { email: "x@example.test" } })).toBe(0);
  });
});
