import { protocolMetadata } from "@bulwark/protocol";
import { chunkKey, PointReader } from "@bulwark/repository";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  backup,
  CHUNK,
  codeOf,
  commitMessages,
  Harness,
  type TestAgent,
  Volume,
  wireChunk,
} from "./support/harness.js";

// The backup path through a real agent listener: mTLS, real Postgres, a real repository.

const h = new Harness();
let agent: TestAgent;

beforeAll(async () => {
  await h.setUp("server_ingest");
  await h.start();
  agent = await h.agent();
});
afterAll(async () => h.tearDown());

async function restoreBytes(backupId: string): Promise<Buffer> {
  const row = await h.db.catalog.backup.findUniqueOrThrow({ where: { id: backupId } });
  const { repo } = await h.registry!.get(row.repositoryId);
  const reader = new PointReader(repo, await repo.readPoint(row.indexRef));
  return reader.read(0, reader.size);
}

describe("BackupService", () => {
  it("takes a full backup, then an incremental that sends only the changed chunks", async () => {
    const client = h.client(agent);
    const volume = Volume.random(40, { zeroEvery: 7, tail: 1000 });
    const full = await backup(client, agent, "vol-root", volume);
    const nonZero = full.ids.filter(Boolean).length;
    expect(full.sent).toBe(nonZero);
    expect(full.begin.resumed).toBe(false);
    expect(full.begin.previousIndexValid).toBe(false);
    expect(full.commit.newBytes).toBe(volume.bytes.length - 6 * CHUNK); // six zero chunks are never sent
    expect((await restoreBytes(full.commit.restorePointId)).equals(volume.bytes)).toBe(true);

    const session1 = await h.db.catalog.backupSession.findFirstOrThrow({
      where: { backupId: full.commit.restorePointId },
    });
    expect(session1.status).toBe("COMMITTED");
    expect(session1.chunksReceived).toBe(nonZero);
    const backup1 = await h.db.catalog.backup.findUniqueOrThrow({
      where: { id: full.commit.restorePointId },
    });
    expect(backup1.jobId).toBe(agent.jobId);
    expect(Number(backup1.volumeSize)).toBe(volume.size);
    expect(await h.db.catalog.chunk.count({ where: { repositoryId: h.repositoryId } })).toBe(nonZero);

    // Incremental: three chunks change, one zero chunk gets data.
    for (const i of [1, 2, 39, 7]) volume.change(i);
    const next = { ...agent, jobId: await h.job(agent.id) };
    const incr = await backup(client, next, "vol-root", volume, {
      previousRestorePointId: full.commit.restorePointId,
      previousIndexDigest: volume.index(full.ids).digest,
    });
    expect(incr.begin.previousIndexValid).toBe(true);
    expect(incr.sent).toBe(4);
    expect(incr.commit.newBytes).toBe(4 * CHUNK);
    const session2 = await h.db.catalog.backupSession.findFirstOrThrow({
      where: { backupId: incr.commit.restorePointId },
    });
    expect(session2.chunksReceived).toBe(4);
    expect(session2.previousId).toBe(full.commit.restorePointId);
    expect((await restoreBytes(incr.commit.restorePointId)).equals(volume.bytes)).toBe(true);
    // The first restore point is unchanged by the second.
    expect(await h.db.catalog.backup.count({ where: { agentId: agent.id } })).toBe(2);
    client.close();
  });

  it("reports as stored bytes the chunk files a backup wrote plus its index nodes", async () => {
    const client = h.client(agent);
    const { repo } = await h.registry!.get(h.repositoryId);
    const fileBytes = async (ids: Buffer[]) => {
      let sum = 0;
      for (const id of ids) sum += (await repo.backend.stat(chunkKey(id)))!.size;
      return sum;
    };
    const storedOf = async (backupId: string) => {
      const row = await h.db.catalog.backup.findUniqueOrThrow({ where: { id: backupId } });
      const indexBytes = (row.stats as { repository: { newStoredBytes: number } }).repository.newStoredBytes;
      return { stored: Number(row.storedBytes), indexBytes };
    };
    // Random chunks do not compress, so their files outweigh their plaintext (header, GCM tag).
    const volume = Volume.random(12, { zeroEvery: 5 });
    const full = await backup(client, { ...agent, jobId: await h.job(agent.id) }, "vol-stored", volume);
    const sentIds = full.ids.filter((id): id is Buffer => id !== null);
    const first = await storedOf(full.commit.restorePointId);
    expect(first.indexBytes).toBeGreaterThan(0);
    expect(first.stored).toBe((await fileBytes(sentIds)) + first.indexBytes);
    expect(first.stored).toBeGreaterThan(full.commit.newBytes);

    // Incremental: only the two changed chunks' files are new.
    for (const i of [1, 8]) volume.change(i);
    const incr = await backup(client, { ...agent, jobId: await h.job(agent.id) }, "vol-stored", volume, {
      previousRestorePointId: full.commit.restorePointId,
      previousIndexDigest: volume.index(full.ids).digest,
    });
    expect(incr.sent).toBe(2);
    const second = await storedOf(incr.commit.restorePointId);
    expect(second.stored).toBe((await fileBytes([incr.ids[1]!, incr.ids[8]!])) + second.indexBytes);
    client.close();
  });

  it("says a stale cache is stale", async () => {
    const client = h.client(agent);
    const volume = Volume.random(3);
    const first = await backup(client, { ...agent, jobId: await h.job(agent.id) }, "vol-cache", volume);
    const begin = await client.begin({
      jobId: await h.job(agent.id),
      volumeId: "vol-cache",
      size: volume.size,
      previousRestorePointId: first.commit.restorePointId,
      previousIndexDigest: Buffer.alloc(32, 1),
    });
    expect(begin.previousIndexValid).toBe(false);
    await client.abort(begin.sessionId);
    client.close();
  });

  it("refuses a commit that names a chunk the repository lacks, and creates no backup", async () => {
    const client = h.client(agent);
    const volume = Volume.random(4);
    const jobId = await h.job(agent.id);
    const begin = await client.begin({ jobId, volumeId: "vol-unknown", size: volume.size });
    const ids = volume.ids(begin.chunkIdScheme!);
    // Upload all but chunk 2, then commit the complete index.
    await client.upload([
      {
        sessionId: begin.sessionId,
        batchSeq: 1,
        chunks: [0, 1, 3].map((i) => wireChunk(volume, i, ids[i]!)),
      },
    ]);
    const err = await client.commit(commitMessages(begin.sessionId, volume, ids)).catch((e) => e);
    expect(err.code).toBe("BULWARK_PROTO_UNKNOWN_CHUNKS");
    expect(err.details).toMatchObject({ count: 1, ids: [ids[2]!.toString("hex")] });
    expect(await h.db.catalog.backup.count({ where: { jobId } })).toBe(0);
    const row = await h.db.catalog.backupSession.findUniqueOrThrow({ where: { id: begin.sessionId } });
    expect(row.status).toBe("OPEN");
    // No restore point without its Backup row.
    const points = await (await h.registry!.get(h.repositoryId)).repo.listPoints();
    expect(points).toHaveLength(await h.db.catalog.backup.count());
    // Still usable: upload the missing chunk, commit again, and a retry returns the same point.
    await client.upload([
      { sessionId: begin.sessionId, batchSeq: 2, chunks: [wireChunk(volume, 2, ids[2]!)] },
    ]);
    const done = await client.commit(commitMessages(begin.sessionId, volume, ids));
    const again = await client.commit(commitMessages(begin.sessionId, volume, ids));
    expect(again.restorePointId).toBe(done.restorePointId);
    expect((await restoreBytes(done.restorePointId)).equals(volume.bytes)).toBe(true);
    client.close();
  });

  it("runs one commit of a session at a time", async () => {
    const client = h.client(agent);
    const volume = Volume.random(3);
    const begin = await client.begin({
      jobId: await h.job(agent.id),
      volumeId: "vol-twice",
      size: volume.size,
    });
    const ids = volume.ids(begin.chunkIdScheme!);
    await client.upload([
      {
        sessionId: begin.sessionId,
        batchSeq: 1,
        chunks: [0, 1, 2].map((i) => wireChunk(volume, i, ids[i]!)),
      },
    ]);
    const msgs = commitMessages(begin.sessionId, volume, ids);
    let answer: Promise<unknown> = Promise.resolve();
    const first = h.client(agent);
    const call = await new Promise<ReturnType<typeof first.raw.commit>>((resolve) => {
      answer = new Promise((done, fail) => {
        const c = first.raw.commit(protocolMetadata(), (err, res) => (err ? fail(err) : done(res)));
        for (const m of msgs.slice(0, -1)) c.write(m); // everything but the finish
        resolve(c);
      });
    });
    while (!h.listener!.context.ingests.isCommitting(begin.sessionId))
      await new Promise((r) => setTimeout(r, 10));
    expect(await codeOf(client.commit(msgs))).toBe("BULWARK_PROTO_SESSION_BUSY");
    call.write(msgs.at(-1)!);
    call.end();
    expect(await answer).toMatchObject({ restorePointId: expect.any(String) });
    expect(h.listener!.context.ingests.isCommitting(begin.sessionId)).toBe(false);
    first.close();
    client.close();
  });

  it("trusts chunk files over the index: a row whose file is gone is asked for again", async () => {
    const client = h.client(agent);
    const volume = Volume.random(3);
    const first = await backup(client, { ...agent, jobId: await h.job(agent.id) }, "vol-stale", volume);
    // GC (or a person) removed chunk 1's file; its index row is now stale.
    const { repo } = await h.registry!.get(h.repositoryId);
    await repo.backend.delete(chunkKey(first.ids[1]!));
    const begin = await client.begin({
      jobId: await h.job(agent.id),
      volumeId: "vol-stale",
      size: volume.size,
    });
    expect(
      (
        await client.query(
          begin.sessionId,
          first.ids.map((id) => id!),
        )
      ).missing,
    ).toEqual([]); // the index still says present
    const err = await client.commit(commitMessages(begin.sessionId, volume, first.ids)).catch((e) => e);
    expect(err.code).toBe("BULWARK_PROTO_UNKNOWN_CHUNKS");
    expect(
      (
        await client.query(
          begin.sessionId,
          first.ids.map((id) => id!),
        )
      ).missing,
    ).toEqual([1]);
    await client.upload([
      { sessionId: begin.sessionId, batchSeq: 1, chunks: [wireChunk(volume, 1, first.ids[1]!)] },
    ]);
    const done = await client.commit(commitMessages(begin.sessionId, volume, first.ids));
    expect((await restoreBytes(done.restorePointId)).equals(volume.bytes)).toBe(true);
    client.close();
  });

  it("ends a session on Abort, harmlessly twice, and refuses work on it afterwards", async () => {
    const client = h.client(agent);
    const volume = Volume.random(2);
    const jobId = await h.job(agent.id);
    const begin = await client.begin({ jobId, volumeId: "vol-abort", size: volume.size });
    const ids = volume.ids(begin.chunkIdScheme!);
    await client.abort(begin.sessionId);
    await client.abort(begin.sessionId);
    expect(h.listener!.context.ingests.ids()).not.toContain(begin.sessionId);
    expect(
      await codeOf(
        client.upload([{ sessionId: begin.sessionId, batchSeq: 1, chunks: [wireChunk(volume, 0, ids[0]!)] }]),
      ),
    ).toBe("BULWARK_PROTO_SESSION_CLOSED");
    expect(await codeOf(client.commit(commitMessages(begin.sessionId, volume, ids)))).toBe(
      "BULWARK_PROTO_SESSION_CLOSED",
    );
    expect(
      await codeOf(
        client.begin({ jobId, volumeId: "vol-abort", size: volume.size, resumeToken: begin.resumeToken }),
      ),
    ).toBe("BULWARK_PROTO_SESSION_CLOSED");
    // A resumed session keeps its geometry.
    const other = await client.begin({ jobId, volumeId: "vol-abort", size: volume.size });
    expect(
      await codeOf(
        client.begin({
          jobId,
          volumeId: "vol-abort",
          size: volume.size + CHUNK,
          resumeToken: other.resumeToken,
        }),
      ),
    ).toBe("BULWARK_PROTO_GEOMETRY_INVALID");
    client.close();
  });

  it("takes one session's chunks on parallel streams, the same chunk on two of them at once", async () => {
    const client = h.client(agent);
    const volume = Volume.random(64);
    const begin = await client.begin({
      jobId: await h.job(agent.id),
      volumeId: "vol-parallel",
      size: volume.size,
    });
    const ids = volume.ids(begin.chunkIdScheme!);
    const streams = [0, 1, 2, 3].map((s) =>
      client.upload(
        [0, 1, 2, 3].map((b) => ({
          sessionId: begin.sessionId,
          batchSeq: s * 10 + b,
          // Chunk 0 rides in every stream's first batch.
          chunks: [...new Set([b === 0 ? 0 : -1, ...Array.from({ length: 4 }, (_, k) => s * 16 + b * 4 + k)])]
            .filter((i) => i >= 0)
            .map((i) => wireChunk(volume, i, ids[i]!)),
        })),
      ),
    );
    const acks = (await Promise.all(streams)).flat();
    expect(acks).toHaveLength(16);
    expect(acks.reduce((n, a) => n + a.stored, 0)).toBe(64);
    expect(acks.reduce((n, a) => n + a.alreadyPresent, 0)).toBe(3); // chunk 0, the three extra times
    const done = await client.commit(commitMessages(begin.sessionId, volume, ids));
    expect(done.newBytes).toBe(64 * CHUNK);
    expect((await restoreBytes(done.restorePointId)).equals(volume.bytes)).toBe(true);
    client.close();
  });
});
