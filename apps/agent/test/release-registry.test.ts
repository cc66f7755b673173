import { describe, expect, it } from "vitest";
import { ReleaseRegistry } from "../src/snapshot/release-registry.js";

// The release registry's order on a signal: drains first (the daemon stopping its jobs, which
// release their own snapshots and run post hooks), then whatever is still registered, newest first;
// a drain that does not end in time does not hold the release back.

describe("ReleaseRegistry", () => {
  it("runs the drains before releasing what is left, newest first", async () => {
    const r = new ReleaseRegistry();
    const order: string[] = [];
    r.register("snapshot A", async () => {
      order.push("release A");
    });
    const unregisterB = r.register("snapshot B", async () => {
      order.push("release B");
    });
    r.register("post hooks", async () => {
      order.push("release post");
    });
    r.beforeRelease(async () => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      // The job released B itself and unregistered it.
      unregisterB();
      order.push("drained");
    });
    await r.drainAndReleaseAll(5_000);
    expect(order).toEqual(["drained", "release post", "release A"]);
    expect(r.size).toBe(0);
  });

  it("releases after the drain time even if a drain never ends, and reports both", async () => {
    const r = new ReleaseRegistry();
    const released: string[] = [];
    const failures: string[] = [];
    r.register("snapshot", async () => {
      released.push("snapshot");
    });
    r.register("broken", async () => {
      throw new Error("lvremove failed");
    });
    r.beforeRelease(() => new Promise<void>(() => {}));
    const started = Date.now();
    await r.drainAndReleaseAll(200, (label, error) => failures.push(`${label}: ${(error as Error).message}`));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(released).toEqual(["snapshot"]);
    expect(failures).toEqual(["stopping the agent's jobs: not done after 200 ms", "broken: lvremove failed"]);
  });

  it("after a drain timed out, a job that finishes with the release still records its result", async () => {
    const r = new ReleaseRegistry();
    const order: string[] = [];
    let postHooksDone!: () => void;
    const postHooks = new Promise<void>((resolve) => {
      postHooksDone = resolve;
    });
    // The job's own path and the registry share the post hooks' run (the daemon's runPost).
    r.register("post hooks", async () => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      order.push("post hooks");
      postHooksDone();
    });
    r.beforeRelease(async () => {
      await postHooks;
      await new Promise((resolve) => setTimeout(resolve, 20));
      order.push("result recorded");
    });
    await r.drainAndReleaseAll(100);
    expect(order).toEqual(["post hooks", "result recorded"]);
  });
});
