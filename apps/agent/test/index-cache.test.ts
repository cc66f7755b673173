import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { IndexCacheWriter, indexCachePath, openIndexCache } from "../src/index.js";
import { tempDir } from "./helpers/system.js";

const MiB = 1024 * 1024;

describe("local index cache", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => dir.cleanup());

  const header = {
    repositoryId: "repo-7f3a",
    restorePointId: "rp-0001",
    volumeKey: "machine-1:/dev/vg0/root",
    chunkSize: MiB,
    volumeSize: 100 * MiB + 512,
    chunkCount: 101,
    idLength: 32,
  };
  const expectation = {
    repositoryId: "repo-7f3a",
    volumeKey: header.volumeKey,
    chunkSize: MiB,
    volumeSize: header.volumeSize,
  };

  async function writeCache(path: string, ids: Buffer): Promise<void> {
    const writer = await IndexCacheWriter.create(path, header);
    // Written in two pieces, as the pipeline appends IDs while it hashes.
    await writer.append(ids.subarray(0, 50 * 32));
    await writer.append(ids.subarray(50 * 32));
    await writer.commit();
  }

  it("round-trips IDs and reads any range on demand", async () => {
    const path = indexCachePath(dir.path, header.volumeKey);
    const ids = randomBytes(101 * 32);
    ids.fill(0, 10 * 32, 11 * 32); // an unused chunk
    await writeCache(path, ids);
    const load = await openIndexCache(path, { ...expectation, restorePointId: "rp-0001" });
    expect(load.status).toBe("ok");
    if (load.status !== "ok") return;
    try {
      expect(load.cache.header).toEqual(header);
      expect(await load.cache.read(0, 101)).toEqual(ids);
      expect(await load.cache.read(10, 2)).toEqual(ids.subarray(320, 384));
    } finally {
      await load.cache.close();
    }
  });

  it("detects a missing, damaged, foreign, stale or re-sized cache and never trusts it", async () => {
    const path = indexCachePath(dir.path, header.volumeKey);
    expect((await openIndexCache(path, expectation)).status).toBe("missing");
    await writeCache(path, randomBytes(101 * 32));
    const good = readFileSync(path);

    const flipped = Buffer.from(good);
    flipped[200] = flipped[200]! ^ 1;
    writeFileSync(path, flipped);
    expect(await openIndexCache(path, expectation)).toMatchObject({
      status: "corrupt",
      reason: "checksum mismatch",
    });

    writeFileSync(path, good.subarray(0, good.length - 7));
    expect((await openIndexCache(path, expectation)).status).toBe("corrupt");

    const magic = Buffer.from(good);
    magic[0] = 0x58;
    writeFileSync(path, magic);
    expect(await openIndexCache(path, expectation)).toMatchObject({ status: "corrupt", reason: "bad magic" });

    writeFileSync(path, good);
    expect((await openIndexCache(path, { ...expectation, repositoryId: "other-repo" })).status).toBe(
      "foreign",
    );
    expect((await openIndexCache(path, { ...expectation, volumeSize: 200 * MiB })).status).toBe(
      "geometry-changed",
    );
    expect((await openIndexCache(path, { ...expectation, restorePointId: "rp-0002" })).status).toBe("stale");
  });

  it("leaves the previous cache in place when a new one is abandoned", async () => {
    const path = indexCachePath(dir.path, header.volumeKey);
    const ids = randomBytes(101 * 32);
    await writeCache(path, ids);
    const writer = await IndexCacheWriter.create(path, { ...header, restorePointId: "rp-0002" });
    await writer.append(randomBytes(32 * 5));
    await expect(writer.commit()).rejects.toMatchObject({ code: "BULWARK_AGENT_INVALID_ARGUMENT" });
    await writer.abort();
    const load = await openIndexCache(path, { ...expectation, restorePointId: "rp-0001" });
    expect(load.status).toBe("ok");
    if (load.status === "ok") await load.cache.close();
  });
});
