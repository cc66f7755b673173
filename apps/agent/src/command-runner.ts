import { spawn } from "node:child_process";
import { agentError } from "./errors.js";

/**
 * The one seam through which the agent runs external programs (lsblk, fsfreeze, lvcreate,
 * thin_delta, PowerShell, hooks). Production uses ProcessCommandRunner; tests of the providers that
 * cannot run on the test kernel (lvm, lvm-thin, vss) substitute a runner that records the exact argv
 * and answers with recorded output.
 */
export interface CommandSpec {
  command: string;
  args: string[];
  input?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
  /** Aborting stops the command like its timeout does (hooks: a cancelled job's pre hook). */
  signal?: AbortSignal;
}

export interface CommandResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CommandRunner {
  run(spec: CommandSpec): Promise<CommandResult>;
}

/** External tools answer in seconds; a stuck lvcreate or PowerShell must not hold the backup forever. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 120_000;
/** lsblk/lvs/thin_delta output is small; the cap keeps a runaway command from exhausting memory. */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
/** How long a timed-out or aborted command gets between SIGTERM and SIGKILL. */
export const KILL_GRACE_MS = 5_000;
/**
 * POSIX: each command leads its own process group, and stopping it signals the whole group: a hook
 * `sh -c "… sleep 600"` would otherwise lose only its shell, and the sleep would keep the output
 * pipes (and so the agent's wait) open until it ends by itself.
 */
const OWN_GROUP = process.platform !== "win32";

export class ProcessCommandRunner implements CommandRunner {
  run(spec: CommandSpec): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      if (spec.signal?.aborted) {
        reject(
          agentError("BULWARK_AGENT_COMMAND_FAILED", `${spec.command} not started: stopped before it began`, {
            command: spec.command,
          }),
        );
        return;
      }
      // No shell: arguments are passed as they are, so names and paths cannot inject commands.
      const child = spawn(spec.command, spec.args, {
        stdio: ["pipe", "pipe", "pipe"],
        env: { ...process.env, LC_ALL: "C", ...spec.env },
        detached: OWN_GROUP,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let size = 0;
      let killTimer: NodeJS.Timeout | undefined;
      const signalAll = (sig: NodeJS.Signals) => {
        try {
          if (OWN_GROUP && child.pid !== undefined) process.kill(-child.pid, sig);
          else child.kill(sig);
        } catch {
          // ESRCH: the group is already gone.
        }
      };
      // SIGTERM now, SIGKILL after the grace period unless every pipe closed before.
      const stop = () => {
        if (killTimer) return;
        signalAll("SIGTERM");
        killTimer = setTimeout(() => signalAll("SIGKILL"), KILL_GRACE_MS);
      };
      const timer = setTimeout(stop, spec.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
      const onAbort = () => stop();
      const settle = () => {
        clearTimeout(timer);
        clearTimeout(killTimer);
        spec.signal?.removeEventListener("abort", onAbort);
      };
      const collect = (sink: Buffer[]) => (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_OUTPUT_BYTES) signalAll("SIGKILL");
        else sink.push(chunk);
      };
      child.stdout.on("data", collect(out));
      child.stderr.on("data", collect(err));
      spec.signal?.addEventListener("abort", onAbort, { once: true });
      child.on("error", (e) => {
        settle();
        reject(
          agentError("BULWARK_AGENT_COMMAND_FAILED", `cannot run ${spec.command}: ${e.message}`, {
            command: spec.command,
          }),
        );
      });
      child.on("close", (exitCode, signal) => {
        settle();
        resolve({
          exitCode,
          signal,
          stdout: Buffer.concat(out).toString("utf8"),
          stderr: Buffer.concat(err).toString("utf8"),
        });
      });
      child.stdin.on("error", () => {}); // a command that exits without reading its input is fine
      child.stdin.end(spec.input ?? "");
    });
  }
}

/** Runs a command and turns a non-zero exit into BULWARK_AGENT_COMMAND_FAILED with its stderr. */
export async function runChecked(runner: CommandRunner, spec: CommandSpec): Promise<CommandResult> {
  const result = await runner.run(spec);
  if (result.exitCode !== 0) {
    throw agentError(
      "BULWARK_AGENT_COMMAND_FAILED",
      `${spec.command} ${spec.args.join(" ")} failed (${result.signal ?? `exit ${result.exitCode}`}): ${result.stderr.trim().slice(0, 2000)}`,
      { command: spec.command, args: spec.args, exitCode: result.exitCode, signal: result.signal },
    );
  }
  return result;
}
