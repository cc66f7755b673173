import type { BackupPolicy, Hook } from "@bulwark/protocol";
import { describe, expect, it } from "vitest";
import { ProcessCommandRunner } from "../src/command-runner.js";
import {
  boundedOutput,
  checkHooks,
  HOOK_OUTPUT_CHARS,
  hookLogMessage,
  hookSucceeded,
  MAX_HOOKS_PER_PHASE,
  preHookFailure,
  runHooks,
} from "../src/daemon/hooks.js";

// The daemon's policy hooks with real processes (no shell unless argv names one): validation,
// order and stopping rules, timeouts, start failures, environment, bounded and cleaned output.

const runner = new ProcessCommandRunner();

function policy(pre: Hook[], post: Hook[] = []): BackupPolicy {
  return {
    bandwidthLimitBytesPerSecond: 0,
    preHooks: pre,
    postHooks: post,
    snapshotProvider: "",
    freezeFilesystem: false,
    uploadStreams: 0,
  };
}

describe("policy hooks", () => {
  it("refuses hooks that cannot be run as given", () => {
    const code = (p: BackupPolicy) => checkHooks(p)?.code;
    expect(checkHooks(undefined)).toBeUndefined();
    expect(checkHooks(policy([{ argv: ["/bin/true"], timeoutSeconds: 0 }]))).toBeUndefined();
    expect(code(policy([{ argv: [], timeoutSeconds: 0 }]))).toBe("BULWARK_CONTROL_COMMAND_INVALID");
    expect(code(policy([{ argv: [""], timeoutSeconds: 0 }]))).toBe("BULWARK_CONTROL_COMMAND_INVALID");
    expect(code(policy([], [{ argv: ["/bin/echo", "a\u0000b"], timeoutSeconds: 0 }]))).toBe(
      "BULWARK_CONTROL_COMMAND_INVALID",
    );
    expect(code(policy([{ argv: ["/bin/true"], timeoutSeconds: 100 * 24 * 3600 }]))).toBe(
      "BULWARK_CONTROL_COMMAND_INVALID",
    );
    const many = Array.from({ length: MAX_HOOKS_PER_PHASE + 1 }, () => ({
      argv: ["/bin/true"],
      timeoutSeconds: 0,
    }));
    expect(checkHooks(policy([], many))?.message).toContain("post hooks");
  });

  it("runs argv without a shell, passes the environment, and stops pre hooks at the first failure", async () => {
    const seen: string[] = [];
    const runs = await runHooks(
      runner,
      "pre",
      [
        { argv: ["/usr/bin/printf", "%s|%s", "$BULWARK_JOB_ID", "; echo no"], timeoutSeconds: 0 },
        {
          argv: ["/bin/sh", "-c", 'echo "$BULWARK_JOB_ID $BULWARK_HOOK_PHASE $BULWARK_HOOK_INDEX"; exit 4'],
          timeoutSeconds: 0,
        },
        { argv: ["/bin/sh", "-c", "echo never"], timeoutSeconds: 0 },
      ],
      { BULWARK_JOB_ID: "job-1" },
      (r) => seen.push(`${r.phase}${r.index}`),
    );
    expect(seen).toEqual(["pre1", "pre2"]);
    expect(runs[0]).toMatchObject({ exitCode: 0, stdout: "$BULWARK_JOB_ID|; echo no" });
    expect(runs[1]).toMatchObject({ exitCode: 4, stdout: "job-1 pre 2\n" });
    expect(hookSucceeded(runs[1]!)).toBe(false);
    const err = preHookFailure(runs[1]!);
    expect(err.code).toBe("BULWARK_AGENT_HOOK_FAILED");
    expect(err.message).toContain("pre hook 2 (/bin/sh) exited 4");
    expect(err.message).toContain("job-1 pre 2");
  });

  it("runs every post hook whatever the earlier ones did; reports start failures and timeouts", async () => {
    const runs = await runHooks(
      runner,
      "post",
      [
        { argv: ["/nonexistent/hook"], timeoutSeconds: 0 },
        { argv: ["/bin/sleep", "30"], timeoutSeconds: 1 },
        { argv: ["/bin/true"], timeoutSeconds: 0 },
      ],
      {},
      () => {},
    );
    expect(runs.map((r) => hookSucceeded(r))).toEqual([false, false, true]);
    expect(runs[0]?.startError).toContain("/nonexistent/hook");
    expect(runs[1]).toMatchObject({ timedOut: true, exitCode: null });
    expect(hookLogMessage(runs[1]!)).toContain("post hook 2 (/bin/sleep) timed out");
  }, 30_000);

  it("a timeout or an abort stops the hook's whole process group, not only its shell", async () => {
    // The background sleep holds the hook's stdout: with only the shell killed, the run would last
    // the sleep's 600 s. The timeout case has the same shape.
    const holder = (timeoutSeconds: number): Hook => ({
      argv: ["/bin/sh", "-c", "sleep 600 & echo started; wait"],
      timeoutSeconds,
    });
    const timed = await runHooks(runner, "post", [holder(1)], {}, () => {});
    expect(timed[0]).toMatchObject({ timedOut: true, stopped: false, exitCode: null, stdout: "started\n" });
    expect(timed[0]!.durationMs).toBeLessThan(30_000);

    const controller = new AbortController();
    setTimeout(() => controller.abort("cancel"), 500);
    const started = Date.now();
    const seen: string[] = [];
    const aborted = await runHooks(
      runner,
      "pre",
      [holder(0), { argv: ["/bin/true"], timeoutSeconds: 0 }],
      {},
      (r) => seen.push(`${r.phase}${r.index}`),
      controller.signal,
    );
    expect(Date.now() - started).toBeLessThan(30_000);
    // Stopped, reported as such, and no later hook started.
    expect(aborted).toHaveLength(1);
    expect(aborted[0]).toMatchObject({ stopped: true, timedOut: false, exitCode: null, signal: "SIGTERM" });
    expect(hookLogMessage(aborted[0]!)).toContain("was stopped (SIGTERM)");
    expect(seen).toEqual(["pre1"]);
    // An already aborted signal starts nothing.
    expect(await runHooks(runner, "pre", [holder(0)], {}, () => {}, controller.signal)).toEqual([]);
  }, 60_000);

  it("keeps the end of long output and no control characters but newlines", () => {
    const long = `${"x".repeat(HOOK_OUTPUT_CHARS)}END`;
    const out = boundedOutput(long);
    expect(out.endsWith("END")).toBe(true);
    expect(out.length).toBe(HOOK_OUTPUT_CHARS + 1);
    expect(boundedOutput("a\tb\r\nc\u001b[31md\u0000")).toBe("a b\nc?[31md?");
  });
});
