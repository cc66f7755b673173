import { type CommandRunner, type CommandSpec, runChecked } from "./command-runner.js";
import { agentError } from "./errors.js";

/** Windows PowerShell 5.1 ships with every supported Windows; pwsh 7 is optional. */
export const POWERSHELL = "powershell.exe";

/** A PowerShell single-quoted literal: only the quote itself needs doubling. */
export function psQuote(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/**
 * The command line for a script. -EncodedCommand (base64 of UTF-16LE) sidesteps every quoting
 * rule of cmd.exe and CreateProcess; $ErrorActionPreference=Stop makes any failure a non-zero exit.
 */
export function powershellCommand(script: string): CommandSpec {
  const full = `$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\n${script}`;
  return {
    command: POWERSHELL,
    args: [
      "-NoProfile",
      "-NonInteractive",
      "-ExecutionPolicy",
      "Bypass",
      "-EncodedCommand",
      encodeScript(full),
    ],
  };
}

export function encodeScript(script: string): string {
  return Buffer.from(script, "utf16le").toString("base64");
}

/** The script inside a powershellCommand spec (tests assert on it). */
export function decodeScript(spec: CommandSpec): string {
  const i = spec.args.indexOf("-EncodedCommand");
  return Buffer.from(spec.args[i + 1] ?? "", "base64").toString("utf16le");
}

/** Runs a script that ends in ConvertTo-Json and parses its output. */
export async function runPowershellJson(runner: CommandRunner, script: string): Promise<unknown> {
  const result = await runChecked(runner, powershellCommand(script));
  try {
    // Windows PowerShell may prefix a UTF-8 BOM.
    return JSON.parse(result.stdout.replace(/^\uFEFF/, "").trim() || "null");
  } catch (err) {
    throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "PowerShell output is not JSON", undefined, err);
  }
}
