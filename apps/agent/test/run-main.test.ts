import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const fixture = fileURLToPath(new URL("./fixtures/run-main-modes.ts", import.meta.url));

/** Runs the fixture and reads its stdout only after `readAfterMs`, as a busy parent would. */
function run(
  mode: string,
  readAfterMs = 0,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", fixture, mode], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout.pause();
    setTimeout(() => child.stdout.on("data", (d: Buffer) => out.push(d)).resume(), readAfterMs);
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout: Buffer.concat(out).toString(), stderr }));
  });
}

describe("runMain: how an agent process ends", () => {
  it("exits with main's code only after a report larger than a pipe's buffer is all read", async () => {
    const r = await run("report", 1_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.length).toBe(1024 * 1024 + 1);
  }, 30_000);

  it("fails with BULWARK_AGENT_STALLED, never 0, when the loop runs dry while main still waits", async () => {
    const r = await run("stall");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^BULWARK_AGENT_STALLED: /);
    expect(r.stdout).toBe("");
  }, 30_000);

  it("prints the described error and exits 1 when main throws", async () => {
    const r = await run("fail");
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("fixture: the disk went away\n");
  }, 30_000);
});
