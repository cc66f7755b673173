import { readFile } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, release, totalmem } from "node:os";
import { run } from "./exec.js";
import type { MachineFacts } from "./results.js";

/** What the docs must say about the machine the numbers came from. */
export async function machineFacts(workDir: string, loadAtStart: number): Promise<MachineFacts> {
  const cpuinfo = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? "unknown";
  const fsType = await run({ argv: ["stat", "-f", "-c", "%T", workDir] })
    .then((r) => r.stdout.trim())
    .catch(() => "unknown");
  return {
    cpuModel: model.trim(),
    cores: availableParallelism(),
    memoryBytes: totalmem(),
    kernel: release(),
    node: process.version,
    filesystem: fsType,
    loadAverage: { start: loadAtStart, end: loadavg()[0]! },
  };
}
