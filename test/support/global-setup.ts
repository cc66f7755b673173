// vitest global setup: runs once before any test file and prepares the migrated template database
// that test databases are cloned from. It runs the catalog code in a child process through tsx
// because vitest loads global setup files outside its own resolver, where workspace packages'
// TypeScript sources (the "source" export condition) are not visible.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const script = fileURLToPath(new URL("../../packages/catalog/src/prepare-test-template.ts", import.meta.url));

export default function setup(): void {
  const out = execFileSync("pnpm", ["exec", "tsx", "--conditions=source", script], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  process.env.BULWARK_TEST_TEMPLATE_DB = out.trim().split("\n").at(-1);
}
