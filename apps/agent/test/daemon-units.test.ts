import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JobOutcome, PartitionTableType } from "@bulwark/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { Backoff } from "../src/daemon/backoff.js";
import { DELIVERED_RECORD_RETENTION_MS, JobRecords } from "../src/daemon/job-records.js";
import { describeVolumes } from "../src/daemon/volumes.js";
import type { Inventory } from "../src/inventory/model.js";

// The daemon's parts that need no server: reconnect backoff, the on-disk job records (results
// until delivered, dedupe after a restart), and inventory → control-stream Inventory and IDs.
// The daemon itself runs against real server nodes in test/control-daemon-e2e.test.ts.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "bulwark-daemon-"));
  dirs.push(d);
  return d;
}

describe("Backoff", () => {
  it("doubles from 1 s to at most 60 s with jitter in [½, 1] of the step, and resets", () => {
    const low = new Backoff(1000, 60_000, () => 0);
    expect([low.next(), low.next(), low.next()]).toEqual([500, 1000, 2000]);
    const high = new Backoff(1000, 60_000, () => 1);
    const seq = Array.from({ length: 10 }, () => high.next());
    expect(seq.slice(0, 4)).toEqual([1000, 2000, 4000, 8000]);
    expect(Math.max(...seq)).toBe(60_000);
    high.reset();
    expect(high.next()).toBe(1000);
  });
});

describe("JobRecords", () => {
  const result = (jobId: string) => ({
    jobId,
    outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED,
    restorePointId: "rp-1",
    error: undefined,
    startedAt: new Date("2026-01-01T00:00:00Z"),
    finishedAt: new Date("2026-01-01T00:01:00Z"),
    capture: undefined,
    restore: undefined,
    attempt: 0,
  });

  it("keeps results until delivered, across a restart, and forgets delivered ones after retention", async () => {
    const dir = tmp();
    const now = new Date("2026-01-02T00:00:00Z");
    const first = new JobRecords(dir);
    await first.load(now);
    await first.finish(result("job/../a"), now); // a hostile ID never becomes a path
    await first.finish(result("job-b"), now);
    await first.markDelivered("job-b");

    const second = new JobRecords(dir);
    await second.load(now);
    expect(second.undelivered().map((r) => r.jobId)).toEqual(["job/../a"]);
    expect(second.get("job/../a")?.result.restorePointId).toBe("rp-1");
    expect(second.get("job-b")?.delivered).toBe(true); // still known: a repeated job-b is not rerun

    const later = new JobRecords(dir);
    await later.load(new Date(now.getTime() + DELIVERED_RECORD_RETENTION_MS + 1000));
    expect(later.get("job-b")).toBeUndefined();
    expect(later.get("job/../a")).toBeDefined(); // undelivered results are never dropped
  });

  it("drops a torn record instead of failing to start", async () => {
    const dir = tmp();
    const records = new JobRecords(dir);
    await records.load(new Date());
    writeFileSync(join(dir, "control", "jobs", "broken.json"), "{not json");
    const again = new JobRecords(dir);
    await again.load(new Date());
    expect(again.undelivered()).toEqual([]);
  });
});

describe("describeVolumes", () => {
  it("names volumes by filesystem UUID, else device path, keeps IDs unique, and adds image files", async () => {
    const dir = tmp();
    const image = join(dir, "disk.img");
    writeFileSync(image, Buffer.alloc(4096));
    const vol = (path: string, uuid?: string) => ({
      path,
      name: path,
      kind: "partition" as const,
      size: 100,
      ...(uuid ? { uuid, filesystem: "ext4" } : {}),
      mountpoints: path === "/dev/sda1" ? ["/"] : [],
      readOnly: false,
    });
    const inv: Inventory = {
      platform: "linux",
      disks: [
        {
          path: "/dev/sda",
          name: "sda",
          kind: "disk",
          size: 1000,
          serial: "S1",
          removable: false,
          readOnly: false,
          partitionTable: "gpt",
          partitions: [
            {
              path: "/dev/sda1",
              name: "sda1",
              number: 1,
              offset: 1 << 20,
              size: 100,
              volumes: [vol("/dev/sda1", "u-1")],
            },
            { path: "/dev/sda2", name: "sda2", number: 2, size: 100, volumes: [vol("/dev/sda2")] },
          ],
          volumes: [],
        },
        {
          // A clone of sda1's filesystem: same UUID.
          path: "/dev/loop0",
          name: "loop0",
          kind: "loop",
          size: 100,
          removable: false,
          readOnly: false,
          partitions: [],
          volumes: [vol("/dev/loop0", "u-1")],
        },
      ],
    };
    const v = await describeVolumes(inv, [image], new Date());
    expect(v.message.volumes.map((x) => [x.id, x.devicePath, x.diskId])).toEqual([
      ["fs:u-1", "/dev/sda1", "disk:serial:S1"],
      ["dev:/dev/sda2", "/dev/sda2", "disk:serial:S1"],
      ["dev:/dev/loop0", "/dev/loop0", "disk:/dev/loop0"],
      [`file:${image}`, image, ""],
    ]);
    expect(v.message.disks[0]?.partitionTable).toBe(PartitionTableType.PARTITION_TABLE_TYPE_GPT);
    expect(v.message.disks[0]?.partitions.map((p) => [p.number, p.startBytes, p.volumeId])).toEqual([
      [1, 1 << 20, "fs:u-1"],
      [2, 0, "dev:/dev/sda2"],
    ]);
    expect(v.sources.get("fs:u-1")).toEqual({ kind: "device", devicePath: "/dev/sda1", mountPoint: "/" });
    expect(v.sources.get(`file:${image}`)).toEqual({ kind: "file", path: image });
    expect(v.message.volumes[3]?.sizeBytes).toBe(4096);
  });
});
