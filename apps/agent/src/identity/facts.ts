import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { hostname, release, version } from "node:os";
import { BulwarkError } from "@bulwark/errors";
import type { AgentFacts } from "@bulwark/protocol";

// What the agent tells the server about its machine at enrollment (AgentFacts).

/** bulwark-agent's own version, from its package.json (the same relative path from src/ and dist/). */
export const AGENT_VERSION: string = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

const LINUX_MACHINE_ID_FILES = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

/** /etc/machine-id on Linux, MachineGuid on Windows: stable across agent reinstalls. */
export async function machineId(): Promise<string> {
  if (process.platform === "win32") {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        "reg",
        ["query", "HKLM\\SOFTWARE\\Microsoft\\Cryptography", "/v", "MachineGuid"],
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      ),
    );
    const m = /MachineGuid\s+REG_SZ\s+(\S+)/.exec(out);
    if (m?.[1]) return m[1];
  } else {
    for (const file of LINUX_MACHINE_ID_FILES) {
      try {
        const id = (await readFile(file, "utf8")).trim();
        if (id) return id;
      } catch {
        // try the next location
      }
    }
  }
  throw new BulwarkError(
    "BULWARK_ENROLL_FACTS_INVALID",
    "cannot determine this machine's ID (/etc/machine-id or MachineGuid)",
  );
}

/** This machine's facts; `overrides` replace collected values (and skip collecting them). */
export async function collectFacts(overrides: Partial<AgentFacts> = {}): Promise<AgentFacts> {
  return {
    hostname: hostname(),
    os: process.platform === "win32" ? "windows" : process.platform,
    osVersion: `${version()} ${release()}`.replace(/[^\x20-\x7e]/g, "").slice(0, 128),
    arch: process.arch,
    agentVersion: AGENT_VERSION,
    ...overrides,
    machineId: overrides.machineId ?? (await machineId()),
  };
}
