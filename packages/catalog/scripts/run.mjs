// Runs the migration CLI from TypeScript sources when they are present (development, CI), else
// from the compiled dist/ (installed servers).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist", "migrate-cli.js");
const args = process.argv.slice(2);
const run = existsSync(join(root, "src", "migrate-cli.ts"))
  ? spawnSync("pnpm", ["exec", "tsx", "--conditions=source", join(root, "src", "migrate-cli.ts"), ...args], {
      stdio: "inherit",
      cwd: root,
    })
  : spawnSync(process.execPath, [dist, ...args], { stdio: "inherit" });
process.exit(run.status ?? 1);
