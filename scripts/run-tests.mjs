// `pnpm test`: vitest over the workspace, then one plain summary line ("vitest: N passed, N failed,
// N skipped") that any CI can read; the exit code is vitest's. Extra arguments go to vitest.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";

const results = ".bulwark/test-results.json";
mkdirSync(".bulwark", { recursive: true });
rmSync(results, { force: true });

// The generated Prisma client must exist before any test imports the catalog.
const gen = spawnSync(process.execPath, ["packages/catalog/scripts/generate.mjs"], { stdio: "inherit" });
if (gen.status !== 0) process.exit(gen.status ?? 1);

const run = spawnSync(
  "pnpm",
  [
    "exec",
    "vitest",
    "run",
    "--reporter=default",
    "--reporter=json",
    `--outputFile.json=${results}`,
    ...process.argv.slice(2),
  ],
  { stdio: "inherit" },
);
if (existsSync(results)) {
  const r = JSON.parse(readFileSync(results, "utf8"));
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(`\nvitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  if (r.numTotalTests === 0) {
    console.error("no test ran");
    process.exit(1);
  }
} else {
  console.log("\nvitest: 0 passed, 1 failed (vitest wrote no results)");
}
process.exit(run.status ?? 1);
