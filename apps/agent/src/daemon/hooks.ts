import { BulwarkError, isBulwarkError } from "@bulwark/errors";
import type { BackupPolicy, Hook } from "@bulwark/protocol";
import type { CommandRunner } from "../command-runner.js";
import { agentError } from "../errors.js";
import { DEFAULT_HOOK_TIMEOUT_MS } from "../snapshot/hooks.js";

// A policy's pre and post hooks as the daemon runs them around one backup job (docs/jobs.md,
// "Hooks"). Hooks come from an administrator's policy and run as the agent's user: argv as given,
// no shell unless argv[0] is one, a timeout each, output kept (bounded) for the job's log.

/** Hooks per phase: a policy is a handful of commands, not a script. */
export const MAX_HOOKS_PER_PHASE = 16;
/** Arguments per hook, and characters per argument (a `sh -c` line fits the policy's 4096). */
export const MAX_HOOK_ARGS = 256;
export const MAX_HOOK_ARG_LENGTH = 8192;
/** The longest timeout a policy may ask for: a hook holds the application, a day is already absurd. */
export const MAX_HOOK_TIMEOUT_SECONDS = 24 * 3600;
/** Characters of stdout and of stderr kept per hook (the end: errors are printed last). */
export const HOOK_OUTPUT_CHARS = 2000;

export type HookPhase = "pre" | "post";

/** One hook's run, as reported in the job's log. */
export interface HookRun {
  phase: HookPhase;
  /** 1-based position in its phase. */
  index: number;
  program: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** Stopped (process group SIGTERM, then SIGKILL) because the job was cancelled or the agent stops. */
  stopped: boolean;
  /** Set when the program could not be started at all. */
  startError?: string;
  durationMs: number;
  stdout: string;
  stderr: string;
}

export function hookSucceeded(r: HookRun): boolean {
  return r.exitCode === 0 && !r.startError;
}

/** Why the policy's hooks cannot be run as given, or undefined. */
export function checkHooks(policy: BackupPolicy | undefined): BulwarkError | undefined {
  if (!policy) return undefined;
  for (const [phase, hooks] of [
    ["pre", policy.preHooks],
    ["post", policy.postHooks],
  ] as const) {
    if (hooks.length > MAX_HOOKS_PER_PHASE) return invalid(`more than ${MAX_HOOKS_PER_PHASE} ${phase} hooks`);
    for (const [i, h] of hooks.entries()) {
      const where = `${phase} hook ${i + 1}`;
      if (h.argv.length === 0 || !h.argv[0]) return invalid(`${where} has no program`);
      if (h.argv.length > MAX_HOOK_ARGS) return invalid(`${where} has more than ${MAX_HOOK_ARGS} arguments`);
      for (const a of h.argv) {
        if (a.length > MAX_HOOK_ARG_LENGTH)
          return invalid(`${where} has an argument longer than ${MAX_HOOK_ARG_LENGTH} characters`);
        // execve cannot pass a NUL; refusing here gives the admin a reason instead of a spawn error.
        if (a.includes("\u0000")) return invalid(`${where} has a NUL character in an argument`);
      }
      if (
        !Number.isSafeInteger(h.timeoutSeconds) ||
        h.timeoutSeconds < 0 ||
        h.timeoutSeconds > MAX_HOOK_TIMEOUT_SECONDS
      )
        return invalid(`${where} timeout must be 0 (default) to ${MAX_HOOK_TIMEOUT_SECONDS} seconds`);
    }
  }
  return undefined;
}

function invalid(message: string): BulwarkError {
  return new BulwarkError("BULWARK_CONTROL_COMMAND_INVALID", `policy hooks: ${message}`);
}

/** The last `HOOK_OUTPUT_CHARS` of an output, with control characters (except newlines) made visible-safe. */
export function boundedOutput(text: string): string {
  const tail = text.length > HOOK_OUTPUT_CHARS ? `…${text.slice(-HOOK_OUTPUT_CHARS)}` : text;
  // The control stream refuses control characters in log text; tabs and CRs become spaces.
  return tail
    .replace(/\r\n/g, "\n")
    .replace(/[\t\r]/g, " ")
    .replace(/[\u0000-\u0009\u000b-\u001f\u007f]/g, "?");
}

/**
 * Runs one phase's hooks in order. Pre hooks stop at the first failure (the caller fails the job);
 * post hooks all run, whatever happened before them (each may undo part of a quiesce). `signal`
 * (pre hooks only: the job's cancel) stops the running hook's process group and runs no further one.
 */
export async function runHooks(
  runner: CommandRunner,
  phase: HookPhase,
  hooks: Hook[],
  env: Record<string, string>,
  onRun: (run: HookRun) => void,
  signal?: AbortSignal,
): Promise<HookRun[]> {
  const runs: HookRun[] = [];
  for (const [i, hook] of hooks.entries()) {
    if (signal?.aborted) break;
    const [command, ...args] = hook.argv as [string, ...string[]];
    // For messages only: argv[0] may be long or hold anything the admin typed.
    const program = boundedOutput(command.length > 200 ? `${command.slice(0, 200)}…` : command).replace(
      /\n/g,
      " ",
    );
    const timeoutMs = hook.timeoutSeconds > 0 ? hook.timeoutSeconds * 1000 : DEFAULT_HOOK_TIMEOUT_MS;
    const started = Date.now();
    let run: HookRun;
    try {
      const r = await runner.run({
        command,
        args,
        timeoutMs,
        env: { ...env, BULWARK_HOOK_PHASE: phase, BULWARK_HOOK_INDEX: String(i + 1) },
        ...(signal ? { signal } : {}),
      });
      const durationMs = Date.now() - started;
      const stopped = r.exitCode !== 0 && signal?.aborted === true;
      run = {
        phase,
        index: i + 1,
        program,
        exitCode: r.exitCode,
        signal: r.signal,
        // The runner kills a command that outlives its timeout with SIGTERM (then SIGKILL).
        timedOut: !stopped && r.exitCode === null && durationMs >= timeoutMs,
        stopped,
        durationMs,
        stdout: boundedOutput(r.stdout),
        stderr: boundedOutput(r.stderr),
      };
    } catch (err) {
      run = {
        phase,
        index: i + 1,
        program,
        exitCode: null,
        signal: null,
        timedOut: false,
        stopped: false,
        startError: boundedOutput(isBulwarkError(err) ? err.message : (err as Error).message),
        durationMs: Date.now() - started,
        stdout: "",
        stderr: "",
      };
    }
    runs.push(run);
    onRun(run);
    if (phase === "pre" && !hookSucceeded(run)) break;
  }
  return runs;
}

/** "exited 3", "was killed by SIGKILL", "timed out after 300 s", "could not start: …". */
export function describeHookEnd(r: HookRun, timeoutSeconds?: number): string {
  if (r.startError) return `could not start: ${r.startError}`;
  if (r.stopped)
    return `was stopped (${r.signal ?? "killed"}) because the job was cancelled or the agent is stopping`;
  if (r.timedOut) return `timed out${timeoutSeconds ? ` after ${timeoutSeconds} s` : ""} and was killed`;
  if (r.exitCode === null) return `was killed by ${r.signal ?? "a signal"}`;
  return `exited ${r.exitCode}`;
}

/** The job's failure for a failed pre hook: stable code, the hook's end and its output. */
export function preHookFailure(r: HookRun): BulwarkError {
  const said = (r.stderr.trim() || r.stdout.trim()).slice(-500);
  return agentError(
    "BULWARK_AGENT_HOOK_FAILED",
    `pre hook ${r.index} (${r.program}) ${describeHookEnd(r)}; no snapshot was taken${said ? `: ${said}` : ""}`,
    {
      phase: r.phase,
      index: r.index,
      program: r.program,
      exitCode: r.exitCode,
      signal: r.signal,
      timedOut: r.timedOut,
      stdout: r.stdout,
      stderr: r.stderr,
    },
  );
}

/** Characters of each output in a hook's job-log line: both tails fit the job log's 2000-character lines. */
export const HOOK_LOG_TAIL_CHARS = 800;

/**
 * The job-log text of one hook run (the control stream allows newlines in a log message): its end
 * and the tails of its output. Never its environment or arguments beyond the program.
 */
export function hookLogMessage(r: HookRun): string {
  const tail = (t: string) => (t.length > HOOK_LOG_TAIL_CHARS ? `…${t.slice(-HOOK_LOG_TAIL_CHARS)}` : t);
  const lines = [`${r.phase} hook ${r.index} (${r.program}) ${describeHookEnd(r)} in ${r.durationMs} ms`];
  if (r.stdout) lines.push(`stdout:\n${tail(r.stdout)}`);
  if (r.stderr) lines.push(`stderr:\n${tail(r.stderr)}`);
  return lines.join("\n");
}
