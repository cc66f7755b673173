import {
  fromServiceError,
  protocolMetadata,
  type UploadChunksRequest,
  type UploadChunksResponse,
} from "@bulwark/protocol";
import type { ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Harness, type TestAgent, Volume, wireChunk } from "./support/harness.js";

// An agent keeps its upload stream open between batches and waits for each ack before its memory
// bound lets it read more. The server must therefore ack a batch as soon as it is stored, without
// waiting for a next batch or the end of the stream (it once did, and agents stalled until their
// ack watchdog cut the stream).

const h = new Harness();
let agent: TestAgent;

beforeAll(async () => {
  await h.setUp("server_ingest_acks");
  await h.start();
  agent = await h.agent();
});
afterAll(async () => h.tearDown());

/** Resolves with the next ack, or rejects when none comes within `ms`. */
function nextAck(call: { once(e: "data", f: (a: UploadChunksResponse) => void): unknown }, ms: number) {
  return new Promise<UploadChunksResponse>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack within ${ms} ms`)), ms);
    call.once("data", (ack) => {
      clearTimeout(timer);
      resolve(ack);
    });
  });
}

describe("upload acks", () => {
  it("acks every batch while the stream stays open, one batch at a time", async () => {
    const volume = Volume.random(6);
    const client = h.client(agent);
    const begin = await client.begin({ jobId: agent.jobId, volumeId: "vol-acks", size: volume.size });
    const ids = volume.ids(begin.chunkIdScheme!);
    const call = client.raw.uploadChunks(protocolMetadata());
    call.on("error", () => undefined);
    try {
      for (let seq = 1; seq <= 3; seq++) {
        const batch: UploadChunksRequest = {
          sessionId: begin.sessionId,
          batchSeq: seq,
          chunks: [2 * seq - 2, 2 * seq - 1].map((i) => wireChunk(volume, i, ids[i]!)),
        };
        const ack = nextAck(call, 10_000);
        call.write(batch);
        expect((await ack).batchSeq).toBe(seq);
      }
    } finally {
      call.cancel();
      client.close();
    }
  });

  it("neither acks nor counts a batch that arrives on an open stream after the session was aborted", async () => {
    // Only a stream's first batch looks its session up; later ones are checked where they are
    // counted, in the same UPDATE, before the ack.
    const volume = Volume.random(4);
    const client = h.client(agent);
    const begin = await client.begin({
      jobId: await h.job(agent.id),
      volumeId: "vol-abort-mid",
      size: volume.size,
    });
    const ids = volume.ids(begin.chunkIdScheme!);
    const call = client.raw.uploadChunks(protocolMetadata());
    const failed = new Promise<string>((resolve) =>
      call.on("error", (err: ServiceError) => resolve(fromServiceError(err).code)),
    );
    const batch = (seq: number): UploadChunksRequest => ({
      sessionId: begin.sessionId,
      batchSeq: seq,
      chunks: [2 * seq - 2, 2 * seq - 1].map((i) => wireChunk(volume, i, ids[i]!)),
    });
    try {
      const ack = nextAck(call, 10_000);
      call.write(batch(1));
      expect((await ack).batchSeq).toBe(1);
      await client.abort(begin.sessionId);
      let acked = false;
      call.on("data", () => {
        acked = true;
      });
      call.write(batch(2));
      expect(await failed).toBe("BULWARK_PROTO_SESSION_CLOSED");
      expect(acked).toBe(false);
      const row = await h.db.catalog.backupSession.findUniqueOrThrow({ where: { id: begin.sessionId } });
      expect(row.chunksReceived).toBe(2); // batch 1 only
    } finally {
      call.cancel();
      client.close();
    }
  });
});
