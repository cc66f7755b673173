// Runs in the rig VM: one backup through the agent's runBackup (its built dist/, so node needs no
// TypeScript loader under slow emulation) with the options from the JSON file named by argv[2]. Prints the
// report as JSON on stdout; progress lines (throttled) on stderr show that it is moving.
import { readFileSync } from "node:fs";
import { runBackup } from "../../../apps/agent/dist/backup.js";

const options = JSON.parse(readFileSync(process.argv[2], "utf8"));
let last = 0;
const report = await runBackup({
  ...options,
  onProgress: (p) => {
    if (Date.now() - last < 1000) return;
    last = Date.now();
    process.stderr.write(
      `${JSON.stringify({ progress: { bytesDone: p.bytesDone, bytesRead: p.counters.bytesRead } })}\n`,
    );
  },
});
process.stdout.write(`${JSON.stringify(report)}\n`);
// gRPC channels may keep the event loop alive for a while after the session closed.
process.exit(0);
