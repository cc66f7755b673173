// Runs in the rig VM: one backup through the agent's runBackup (its built dist/, so node needs no
// TypeScript loader under slow emulation) with the options from the JSON file named by argv[2]. Prints the
// report as JSON on stdout, with `timing`: node's start-up (process start to here, module loading
// included) and each external command the agent ran (lvcreate, thin_delta, …) with its duration,
// so the benchmark can show where an incremental's fixed time goes. Progress lines (throttled) on
// stderr show that it is moving.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { runBackup } from "../../../apps/agent/dist/backup.js";
import { ProcessCommandRunner } from "../../../apps/agent/dist/command-runner.js";

const startupMs = Math.round(performance.now());
const options = JSON.parse(readFileSync(process.argv[2], "utf8"));
const commands = [];
const processRunner = new ProcessCommandRunner();
const runner = {
  run: async (spec) => {
    const t = performance.now();
    try {
      return await processRunner.run(spec);
    } finally {
      commands.push({
        command: [spec.command, ...spec.args].join(" "),
        ms: Math.round(performance.now() - t),
      });
    }
  },
};
let last = 0;
const report = await runBackup({
  ...options,
  runner,
  onProgress: (p) => {
    if (Date.now() - last < 1000) return;
    last = Date.now();
    process.stderr.write(
      `${JSON.stringify({ progress: { bytesDone: p.bytesDone, bytesRead: p.counters.bytesRead } })}\n`,
    );
  },
});
process.stdout.write(`${JSON.stringify({ ...report, timing: { startupMs, commands } })}\n`);
// gRPC channels may keep the event loop alive for a while after the session closed.
process.exit(0);
