import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const fixture = fileURLToPath(new URL("./fixtures/ack-watchdog.ts", import.meta.url));

describe("upload stream ack watchdog", () => {
  it("keeps a process with nothing else alive running until it fails the unacked batch", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--conditions=source", "--import", "tsx", fixture, "300"],
      { timeout: 20_000 },
    );
    expect(stdout).toBe("BULWARK_PROTO_TRANSPORT_FAILED: no ack within 300 ms\n");
  }, 30_000);
});
