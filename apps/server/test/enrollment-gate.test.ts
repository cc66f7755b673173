import { isBulwarkError } from "@bulwark/errors";
import { describe, expect, it } from "vitest";
import { Gate, MAX_CONCURRENT_IDENTITY_CALLS } from "../src/grpc/enrollment-service.js";

// The bound on concurrent Enroll / Renew work: calls beyond the limit are refused at once with
// BULWARK_ENROLL_BUSY, and a slot frees when a call ends, whether it succeeded or failed.

describe("identity call gate", () => {
  it("refuses calls beyond the limit and admits again once one ends", async () => {
    const gate = new Gate(2);
    const releases: (() => void)[] = [];
    const held = () =>
      gate.run(
        () =>
          new Promise<string>((resolve) => {
            releases.push(() => resolve("done"));
          }),
      );
    const first = held();
    const second = held();
    const refused = await gate.run(async () => "ran").catch((e: unknown) => e);
    expect(isBulwarkError(refused, "BULWARK_ENROLL_BUSY")).toBe(true);
    releases[0]!();
    expect(await first).toBe("done");
    expect(await gate.run(async () => "ran")).toBe("ran");
    await expect(gate.run(async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(await gate.run(async () => "ran again")).toBe("ran again");
    releases[1]!();
    expect(await second).toBe("done");
    expect(MAX_CONCURRENT_IDENTITY_CALLS).toBeGreaterThan(0);
  });
});
