import { spawn } from "node:child_process";
import { open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { parseTimeV, type TimeReport } from "./time-v.js";

/** One command a tool adapter wants run; the harness decides whether and how to measure it. */
export interface CommandSpec {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Send stdout to this file instead of keeping it (restores to stdout, chatty progress). */
  stdoutFile?: string;
}

export interface CommandResult {
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    readonly spec: CommandSpec,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`command failed (exit ${exitCode}): ${spec.argv.join(" ")}\n${stderr.slice(-4000)}`);
    this.name = "CommandError";
  }
}

const KEEP_OUTPUT = 8 * 1024 * 1024;

/** Runs a command to completion; rejects with its stderr when it exits non-zero. */
export async function run(spec: CommandSpec): Promise<CommandResult> {
  const [cmd, ...args] = spec.argv;
  if (!cmd) throw new Error("empty command");
  const stdoutHandle = spec.stdoutFile ? await open(spec.stdoutFile, "w") : undefined;
  try {
    return await new Promise<CommandResult>((resolve, reject) => {
      const child = spawn(cmd, args, {
        cwd: spec.cwd,
        env: { ...process.env, ...spec.env },
        stdio: ["ignore", stdoutHandle ? stdoutHandle.fd : "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      // Keep the tail only: a chatty tool must not grow the harness's own RSS.
      child.stdout?.on("data", (d: Buffer) => {
        stdout = (stdout + d.toString()).slice(-KEEP_OUTPUT);
      });
      child.stderr?.on("data", (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-KEEP_OUTPUT);
      });
      child.on("error", reject);
      child.on("close", (code) => {
        if (code === 0) resolve({ stdout, stderr });
        else reject(new CommandError(spec, code, stderr));
      });
    });
  } finally {
    await stdoutHandle?.close();
  }
}

export interface Measurement extends TimeReport {
  /** Wall time measured by the harness around the whole command (includes process start). */
  elapsedSeconds: number;
  stdout: string;
}

/**
 * Runs a command under GNU time (`/usr/bin/time -v -o FILE`) after a `sync`, so dirty pages left by
 * the previous step are not flushed on this step's clock.
 */
export async function measure(spec: CommandSpec, scratchDir: string): Promise<Measurement> {
  await run({ argv: ["sync"] });
  const timeFile = join(scratchDir, `time-${process.pid}-${Date.now()}.txt`);
  const started = process.hrtime.bigint();
  try {
    const result = await run({ ...spec, argv: ["/usr/bin/time", "-v", "-o", timeFile, ...spec.argv] });
    const elapsedSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    return { ...parseTimeV(await readFile(timeFile, "utf8")), elapsedSeconds, stdout: result.stdout };
  } finally {
    await rm(timeFile, { force: true });
  }
}
