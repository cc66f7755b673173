import { defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";

// The rig's own run (test/rig/run): its files are *.rig.ts, so the regular suite never picks them
// up. One file at a time: each boots a VM that needs both cores.
export default defineConfig({
  resolve: { conditions: ["source", ...defaultServerConditions] },
  ssr: { resolve: { conditions: ["source", ...defaultServerConditions] } },
  test: {
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/rig/**/*.rig.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 2_400_000,
    hookTimeout: 1_800_000,
    pool: "forks",
    fileParallelism: false,
    reporters: ["default"],
  },
});
