import { defineConfig } from "vitest/config";

// The harness's own unit tests alone (`pnpm --filter @bulwark/bench test`); the root config runs
// them too. The benchmark itself is a script (`pnpm bench`) and never runs under vitest.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    pool: "forks",
  },
});
