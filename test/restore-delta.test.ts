import { randomBytes, randomUUID } from "node:crypto";
import { closeSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RestoreOptions, type RestoreReport, runRestore } from "../apps/agent/src/restore/index.js";
import { sh } from "../apps/agent/test/helpers/system.js";
import {
  type AgentClient,
  backup,
  CHUNK,
  Harness,
  type TestAgent,
  Volume,
} from "../apps/server/test/support/harness.js";

// A delta restore onto a sparse file target (the bench's case: a full restore left the volume's
// free space as holes, then blocks were written into it and into data), all real: server, agent,
// files on ext4. The target's holes are neither read nor filled: a chunk with a few blocks of data
// in a hole is read only where it has data, and zeroed only there.

const CHUNKS = 128;
const BLOCK = 4096;

describe("delta restore onto a sparse file", () => {
  const h = new Harness();
  let agent: TestAgent;
  let client: AgentClient;
  let volume: Volume;
  let backupId: string;

  beforeAll(async () => {
    await h.setUp("restore-delta");
    await h.start();
    agent = await h.agent();
    client = h.client(agent);
    // Every third chunk zero (free space); every fifth data chunk has a zero 4 KiB block inside.
    const bytes = randomBytes(CHUNKS * CHUNK);
    for (let i = 0; i < CHUNKS; i++) {
      if (i % 3 === 0) bytes.fill(0, i * CHUNK, (i + 1) * CHUNK);
      else if (i % 5 === 0) bytes.fill(0, i * CHUNK + 4 * BLOCK, i * CHUNK + 5 * BLOCK);
    }
    volume = new Volume(bytes);
    backupId = (await backup(client, agent, "delta-source", volume)).commit.restorePointId;
  }, 180_000);

  afterAll(async () => {
    client?.close();
    await h.tearDown();
  });

  async function restore(mode: "full" | "delta", target: string): Promise<RestoreReport> {
    const job = await h.db.catalog.job.create({
      data: {
        tenantId: h.tenantId,
        kind: "RESTORE",
        state: "QUEUED",
        idempotencyKey: randomUUID(),
        agentId: agent.id,
        params: { backupId, targetPath: target, mode: mode.toUpperCase() },
      },
    });
    const opts: RestoreOptions = {
      serverUrl: `127.0.0.1:${h.listener!.port}`,
      credentials: h.credentialsFor(agent),
      channelOptions: h.channelOptions(),
      jobId: job.id,
      targetPath: target,
      mode,
      allowForeignTarget: true,
      wholeDisk: false,
      threads: 2,
    };
    return runRestore(opts);
  }

  const allocated = (path: string) => statSync(path).blocks * 512;

  it("reads and zeroes only the data of chunks that are partly hole; equal bytes, unchanged chunks found", async () => {
    expect(sh("stat", ["-f", "-c", "%T", h.dir]).trim()).toBe("ext2/ext3"); // ext4: filefrag is exact
    const target = join(h.dir, "target.img");
    writeFileSync(target, "");
    sh("truncate", ["-s", String(CHUNKS * CHUNK), target]);
    await restore("full", target);
    expect(readFileSync(target).equals(volume.bytes)).toBe(true);

    // Same bytes, other layout: the zero block inside those data chunks becomes a hole. A scan
    // that hashed anything but zeros there would see them changed and fetch them.
    const punched = [...Array(CHUNKS).keys()].filter((i) => i % 3 !== 0 && i % 5 === 0);
    for (const i of punched)
      sh("fallocate", ["-p", "-o", String(i * CHUNK + 4 * BLOCK), "-l", String(BLOCK), target]);
    expect(readFileSync(target).equals(volume.bytes)).toBe(true);
    const before = allocated(target);

    // A block written into free space (a hole of the target), and into data chunks.
    const zeroHit = [...Array(CHUNKS).keys()].filter((i) => i % 3 === 0).slice(0, 12);
    const dataHit = [...Array(CHUNKS).keys()].filter((i) => i % 3 !== 0 && i % 5 !== 0).slice(0, 7);
    const fd = openSync(target, "r+");
    for (const i of [...zeroHit, ...dataHit])
      writeSync(fd, randomBytes(BLOCK), 0, BLOCK, i * CHUNK + 2 * BLOCK);
    closeSync(fd);
    expect(allocated(target)).toBe(before + zeroHit.length * BLOCK);

    const report = await restore("delta", target);
    expect(readFileSync(target).equals(volume.bytes)).toBe(true);
    expect(report.indexVerified).toBe(true);
    expect(report.chunksReceived).toBe(dataHit.length);
    expect(report.chunksZeroWritten).toBe(zeroHit.length);
    expect(report.chunksUnchanged).toBe(CHUNKS - dataHit.length - zeroHit.length);
    // Zeros went over the written blocks only: the holes around them stay holes (a whole chunk of
    // zeros each would allocate 64 KiB per hit chunk). Slack for the file's extent tree.
    expect(allocated(target)).toBeLessThanOrEqual(before + zeroHit.length * BLOCK + 64 * 1024);
    expect(allocated(target)).toBeLessThan(before + (zeroHit.length * CHUNK) / 2);
  });

  it("a target with no hole reads every byte: same result", async () => {
    // Garbage everywhere: no extent is a hole, every chunk differs, zero chunks are written whole.
    const target = join(h.dir, "garbage.img");
    writeFileSync(target, randomBytes(CHUNKS * CHUNK));
    const report = await restore("delta", target);
    expect(readFileSync(target).equals(volume.bytes)).toBe(true);
    expect(report.chunksUnchanged).toBe(0);
    expect(report.chunksZeroWritten).toBe(Math.ceil(CHUNKS / 3));
    expect(allocated(target)).toBeGreaterThanOrEqual(CHUNKS * CHUNK);
  });
});
