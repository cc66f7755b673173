import { defineConfig } from "vitest/config";

// The harness's own unit tests. The root config (`pnpm test`) covers apps/, packages/ and test/ only,
// so the benchmark never runs as part of the test suite; `pnpm --filter @bulwark/bench test` runs these.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    pool: "forks",
  },
});
