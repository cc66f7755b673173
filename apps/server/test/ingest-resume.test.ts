import { readdirSync } from "node:fs";
import { join } from "node:path";
import { protocolMetadata, type UploadChunksRequest, type UploadChunksResponse } from "@bulwark/protocol";
import { PointReader } from "@bulwark/repository";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sweepExpiredSessions } from "../src/ingest/expiry.js";
import { codeOf, commitMessages, Harness, type TestAgent, Volume, wireChunk } from "./support/harness.js";

// A cut stream, a server restart and an idle agent: the session resumes by token without
// re-sending what the server has, or expires and is cleaned up.

const h = new Harness();
let agent: TestAgent;

beforeAll(async () => {
  await h.setUp("server_ingest_resume");
  await h.start();
  agent = await h.agent();
});
afterAll(async () => h.tearDown());

async function restored(backupId: string): Promise<Buffer> {
  const row = await h.db.catalog.backup.findUniqueOrThrow({ where: { id: backupId } });
  const { repo } = await h.registry!.get(row.repositoryId);
  const reader = new PointReader(repo, await repo.readPoint(row.indexRef));
  return reader.read(0, reader.size);
}

function batchesOf(
  sessionId: string,
  volume: Volume,
  ids: (Buffer | null)[],
  which: number[],
  per: number,
): UploadChunksRequest[] {
  const out: UploadChunksRequest[] = [];
  for (let b = 0; b < which.length; b += per) {
    out.push({
      sessionId,
      batchSeq: out.length + 1,
      chunks: which.slice(b, b + per).map((i) => wireChunk(volume, i, ids[i]!)),
    });
  }
  return out;
}

/** Finishes a resumed session the way an agent does: query, upload what is missing, commit. */
async function finish(
  client: ReturnType<Harness["client"]>,
  sessionId: string,
  volume: Volume,
  ids: (Buffer | null)[],
) {
  const nonZero = ids.flatMap((id, i) => (id ? [i] : []));
  const { missing } = await client.query(
    sessionId,
    nonZero.map((i) => ids[i]!),
  );
  const resend = missing.map((m) => nonZero[m]!);
  if (resend.length) await client.upload(batchesOf(sessionId, volume, ids, resend, 8));
  return { resent: resend.length, commit: await client.commit(commitMessages(sessionId, volume, ids)) };
}

describe("resume", () => {
  it("resumes after the upload stream is cut, without re-sending acked chunks", async () => {
    const volume = Volume.random(48, { zeroEvery: 5 });
    const client = h.client(agent);
    const begin = await client.begin({ jobId: agent.jobId, volumeId: "vol-cut", size: volume.size });
    const ids = volume.ids(begin.chunkIdScheme!);
    const nonZero = ids.flatMap((id, i) => (id ? [i] : []));
    const batches = batchesOf(begin.sessionId, volume, ids, nonZero, 4);

    // Send everything, cut the stream as soon as two batches are acked.
    const call = client.raw.uploadChunks(protocolMetadata());
    const acks: UploadChunksResponse[] = [];
    await new Promise<void>((resolve) => {
      call.on("data", (ack: UploadChunksResponse) => {
        acks.push(ack);
        if (acks.length === 2) {
          call.cancel();
          resolve();
        }
      });
      call.on("error", () => resolve());
      for (const b of batches) call.write(b);
    });
    client.close();
    expect(acks.map((a) => a.batchSeq)).toEqual([1, 2]);

    const again = h.client(agent);
    const resumed = await again.begin({
      jobId: agent.jobId,
      volumeId: "vol-cut",
      size: volume.size,
      resumeToken: begin.resumeToken,
    });
    expect(resumed).toMatchObject({ sessionId: begin.sessionId, resumed: true });
    expect(Buffer.from(resumed.resumeToken).equals(Buffer.from(begin.resumeToken))).toBe(true);
    const { resent, commit } = await finish(again, begin.sessionId, volume, ids);
    expect(resent).toBeLessThanOrEqual(nonZero.length - 8); // the two acked batches are not sent again
    const row = await h.db.catalog.backupSession.findUniqueOrThrow({ where: { id: begin.sessionId } });
    // Acked batches were never sent again. Batches the server was still storing when the stream
    // was cut (at most its pipeline depth, 2 × 4 chunks) may be reported missing by a query that
    // overtakes them, and re-sent.
    expect(row.chunksReceived).toBeGreaterThanOrEqual(nonZero.length);
    expect(row.chunksReceived).toBeLessThanOrEqual(nonZero.length + 8);
    expect(await h.db.catalog.chunk.count({ where: { repositoryId: h.repositoryId } })).toBe(nonZero.length);
    expect((await restored(commit.restorePointId)).equals(volume.bytes)).toBe(true);
    again.close();
  });

  it("resumes and commits after the server restarts mid-session", async () => {
    const volume = Volume.random(30, { tail: 4096 });
    const jobId = await h.job(agent.id);
    let client = h.client(agent);
    const begin = await client.begin({ jobId, volumeId: "vol-restart", size: volume.size });
    const ids = volume.ids(begin.chunkIdScheme!);
    const firstHalf = Array.from({ length: 15 }, (_, i) => i);
    await client.upload(batchesOf(begin.sessionId, volume, ids, firstHalf, 5));
    client.close();

    await h.stop(); // the process goes away: listener, ingests and repositories
    await h.start(); // a new one on the same database and repository
    client = h.client(agent);
    const resumed = await client.begin({
      jobId,
      volumeId: "vol-restart",
      size: volume.size,
      resumeToken: begin.resumeToken,
    });
    expect(resumed).toMatchObject({ sessionId: begin.sessionId, resumed: true });
    const { resent, commit } = await finish(client, begin.sessionId, volume, ids);
    expect(resent).toBe(16); // chunks 15..30; the first half survived the restart
    expect((await restored(commit.restorePointId)).equals(volume.bytes)).toBe(true);
    // A retried commit (the answer was lost) gives the same restore point.
    const retry = await client.commit(commitMessages(begin.sessionId, volume, ids));
    expect(retry.restorePointId).toBe(commit.restorePointId);
    client.close();
  });
});

describe("cut commit", () => {
  it("leaves the session OPEN and without a restore point when the commit stream is cut", async () => {
    const volume = Volume.random(6);
    const jobId = await h.job(agent.id);
    const client = h.client(agent);
    const begin = await client.begin({ jobId, volumeId: "vol-cut-commit", size: volume.size });
    const ids = volume.ids(begin.chunkIdScheme!);
    await client.upload(batchesOf(begin.sessionId, volume, ids, [0, 1, 2, 3, 4, 5], 3));
    const msgs = commitMessages(begin.sessionId, volume, ids, 2);
    const call = client.raw.commit(protocolMetadata(), () => undefined);
    for (const m of msgs.slice(0, 2)) call.write(m);
    const ctx = h.listener!.context;
    while (!ctx.ingests.isCommitting(begin.sessionId)) await new Promise((r) => setTimeout(r, 10));
    call.cancel();
    while (ctx.ingests.isCommitting(begin.sessionId)) await new Promise((r) => setTimeout(r, 10));
    const row = await h.db.catalog.backupSession.findUniqueOrThrow({ where: { id: begin.sessionId } });
    expect(row.status).toBe("OPEN");
    expect(await h.db.catalog.backup.count({ where: { jobId } })).toBe(0);
    const done = await client.commit(msgs);
    expect((await restored(done.restorePointId)).equals(volume.bytes)).toBe(true);
    client.close();
  });
});

describe("expiry", () => {
  it("expires an idle session, ends its repository ingest, and lets a new session reuse its chunks", async () => {
    const volume = Volume.random(4);
    const jobId = await h.job(agent.id);
    const client = h.client(agent);
    const begin = await client.begin({ jobId, volumeId: "vol-idle", size: volume.size });
    const ids = volume.ids(begin.chunkIdScheme!);
    await client.upload(batchesOf(begin.sessionId, volume, ids, [0, 1], 2));
    const ctx = h.listener!.context;
    expect(ctx.ingests.ids()).toContain(begin.sessionId);
    const sessionRecords = () =>
      readdirSync(join(h.repoDir, "sessions")).filter((f) => !f.endsWith(".alive"));
    expect(sessionRecords()).toHaveLength(1);

    const later = new Date(Date.now() + 3601 * 1000);
    h.now = () => later;
    try {
      // Past its expiry the session is gone even before the sweep runs.
      expect(await codeOf(client.query(begin.sessionId, [ids[2]!]))).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
      expect(await sweepExpiredSessions(ctx)).toEqual([begin.sessionId]);
      expect(await sweepExpiredSessions(ctx)).toEqual([]);
      const row = await h.db.catalog.backupSession.findUniqueOrThrow({ where: { id: begin.sessionId } });
      expect(row.status).toBe("EXPIRED");
      expect(ctx.ingests.ids()).not.toContain(begin.sessionId);
      expect(sessionRecords()).toHaveLength(0);
      expect(
        await codeOf(
          client.begin({ jobId, volumeId: "vol-idle", size: volume.size, resumeToken: begin.resumeToken }),
        ),
      ).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
      // A new session for the same job: what was uploaded is still there.
      const fresh = await client.begin({ jobId, volumeId: "vol-idle", size: volume.size });
      expect(fresh.sessionId).not.toBe(begin.sessionId);
      expect(
        (
          await client.query(
            fresh.sessionId,
            ids.map((id) => id!),
          )
        ).missing,
      ).toEqual([2, 3]);
    } finally {
      h.now = () => new Date();
    }
    client.close();
  });
});
