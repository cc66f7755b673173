import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { syncHelper } from "../src/sync-helper.js";
import { tempDir } from "./helpers.js";

// The barrier of batched ingest on Linux (spec, "Storage backends"): one long-lived shell runs
// `sync -f DIR` per request and reports each result on its own line.
describe.runIf(process.platform === "linux")("syncfs helper", () => {
  it("flushes a directory's filesystem, reports a failed flush typed with sync's message, and keeps answering in order", async () => {
    const dir = await tempDir();
    const missing = join(dir, "no such directory");
    await expect(syncHelper.syncfs(dir)).resolves.toBe("ok");
    const failed = syncHelper.syncfs(missing);
    const after = syncHelper.syncfs(dir); // queued behind the failure: its answer must be its own
    await expect(failed).rejects.toMatchObject({
      code: "BULWARK_REPO_IO",
      message: expect.stringContaining("no such directory"),
    });
    await expect(after).resolves.toBe("ok");
    // Many at once: each gets one answer, none is lost or shifted.
    const many = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => syncHelper.syncfs(i % 5 === 4 ? missing : dir)),
    );
    expect(many.map((r) => r.status)).toEqual(
      Array.from({ length: 20 }, (_, i) => (i % 5 === 4 ? "rejected" : "fulfilled")),
    );
  });
});
