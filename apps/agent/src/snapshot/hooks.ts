import type { CommandRunner } from "../command-runner.js";
import { agentError } from "../errors.js";

/** A policy's hook: an argv (no shell unless the admin names one, e.g. ["/bin/sh", "-c", "…"]). */
export interface HookCommand {
  argv: string[];
  timeoutMs?: number;
}

export interface Hooks {
  /** Before the snapshot (quiesce an application); failure aborts the backup with no snapshot taken. */
  pre?: HookCommand;
  /** After the snapshot exists or failed (resume the application); always runs if pre ran. */
  post?: HookCommand;
}

/** Hooks are short by design: they hold the application while the snapshot is cut. */
export const DEFAULT_HOOK_TIMEOUT_MS = 5 * 60_000;

export interface HookOutcome {
  exitCode: number | null;
  stderr: string;
}

export async function runHook(
  runner: CommandRunner,
  phase: "pre" | "post",
  hook: HookCommand,
  env: Record<string, string>,
): Promise<HookOutcome> {
  const [command, ...args] = hook.argv;
  if (!command) throw agentError("BULWARK_AGENT_INVALID_ARGUMENT", `${phase} hook has an empty command`);
  const result = await runner.run({
    command,
    args,
    timeoutMs: hook.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS,
    env: { ...env, BULWARK_HOOK_PHASE: phase },
  });
  return { exitCode: result.exitCode, stderr: result.stderr };
}
