import { defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";

// One run for the whole workspace. Workspace packages resolve to their TypeScript
// sources through the "source" export condition, so tests need no build step.
export default defineConfig({
  resolve: { conditions: ["source", ...defaultServerConditions] },
  ssr: { resolve: { conditions: ["source", ...defaultServerConditions] } },
  test: {
    include: ["{apps,packages,test,bench}/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**", "apps/web/**/e2e/**"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // expect.poll() waits for effects that land asynchronously (audit rows, expiry hooks); vitest's
    // 1 s default is within reach of a loaded 2-core CI machine, and a poll returns when it holds.
    expect: { poll: { timeout: 15_000 } },
    pool: "forks",
    reporters: ["default"],
  },
});
