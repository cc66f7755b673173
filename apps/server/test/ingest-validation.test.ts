import { createHmac, randomBytes } from "node:crypto";
import {
  ChunkEncoding,
  MAX_QUERY_IDS,
  MAX_UPLOAD_BATCH_BYTES,
  MAX_UPLOAD_BATCH_CHUNKS,
  MAX_UPLOAD_BATCH_PLAIN_BYTES,
} from "@bulwark/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compress } from "zstd-napi";
import {
  type AgentClient,
  CHUNK,
  codeOf,
  commitMessages,
  Harness,
  type TestAgent,
  Volume,
  wireChunk,
} from "./support/harness.js";

// Bad input gets a clear gRPC error with a Bulwark code, stores nothing of itself, and leaves the
// session usable (docs/protocol.md §8).

const h = new Harness();
let agent: TestAgent;
let client: AgentClient;

beforeAll(async () => {
  await h.setUp("server_ingest_validation");
  await h.start();
  agent = await h.agent();
  client = h.client(agent);
});
afterAll(async () => {
  client?.close();
  await h.tearDown();
});

async function chunkRows(): Promise<number> {
  return h.db.catalog.chunk.count({ where: { repositoryId: h.repositoryId } });
}

describe("BeginSession validation", () => {
  it("refuses bad geometry, foreign chunk sizes, missing fields and unknown jobs", async () => {
    const base = { jobId: agent.jobId, volumeId: "v", size: 10 * CHUNK };
    const geo = (chunkSize: number, sizeBytes = 10 * CHUNK) => ({
      ...base,
      geometry: { sizeBytes, chunkSize, logicalSectorSize: 512 },
    });
    expect(await codeOf(client.begin(geo(3000)))).toBe("BULWARK_PROTO_GEOMETRY_INVALID");
    expect(await codeOf(client.begin(geo(128 * 1024)))).toBe("BULWARK_PROTO_GEOMETRY_INVALID"); // valid, not the repository's
    expect(await codeOf(client.begin(geo(CHUNK, 0)))).toBe("BULWARK_PROTO_GEOMETRY_INVALID");
    expect(await codeOf(client.begin({ ...base, volumeId: "" }))).toBe("BULWARK_PROTO_MALFORMED");
    expect(await codeOf(client.begin({ ...base, jobId: "not-a-job" }))).toBe(
      "BULWARK_PROTO_JOB_NOT_ASSIGNED",
    );
    expect(await codeOf(client.begin({ ...base, resumeToken: Buffer.alloc(5) }))).toBe(
      "BULWARK_PROTO_MALFORMED",
    );
    expect(await codeOf(client.begin({ ...base, resumeToken: randomBytes(32) }))).toBe(
      "BULWARK_PROTO_SESSION_NOT_FOUND",
    );
    expect(
      await codeOf(client.begin({ ...base, previousRestorePointId: "00000000-0000-4000-8000-000000000000" })),
    ).toBe("BULWARK_PROTO_RESTORE_POINT_NOT_FOUND");
  });

  it("refuses a call without the protocol header", async () => {
    const err = await new Promise<Error & { code?: number }>((resolve) =>
      client.raw.queryMissing({ sessionId: "x", ids: [] }, (e) => resolve(e!)),
    );
    expect(err.code).toBe(9); // FAILED_PRECONDITION
    expect(
      String((err as { metadata?: { get(k: string): unknown[] } }).metadata?.get("bulwark-code")[0]),
    ).toBe("BULWARK_PROTO_VERSION_UNSUPPORTED");
  });
});

describe("UploadChunks and Commit validation", () => {
  it("refuses each bad batch whole and keeps the session usable", async () => {
    const volume = Volume.random(6, { tail: 100 });
    const jobId = await h.job(agent.id);
    const begin = await client.begin({ jobId, volumeId: "vol-bad", size: volume.size });
    const sessionId = begin.sessionId;
    const ids = volume.ids(begin.chunkIdScheme!);
    const good = (i: number) => wireChunk(volume, i, ids[i]!);
    const send = (chunks: ReturnType<typeof good>[]) => client.upload([{ sessionId, batchSeq: 1, chunks }]);
    const before = await chunkRows();

    // Content that does not hash to its ID, next to a good chunk: neither is stored.
    const lying = { ...good(1), id: ids[2]! };
    expect(await codeOf(send([good(0), lying]))).toBe("BULWARK_PROTO_CHUNK_ID_MISMATCH");
    // Wrong plain size; a full-size chunk claimed for the short last chunk.
    expect(await codeOf(send([{ ...good(0), plainSize: CHUNK - 1 }]))).toBe("BULWARK_PROTO_CHUNK_INVALID");
    expect(await codeOf(send([{ ...good(0), offsets: [6 * CHUNK] }]))).toBe("BULWARK_PROTO_CHUNK_INVALID");
    // Offsets beyond the volume or unaligned.
    expect(await codeOf(send([{ ...good(0), offsets: [7 * CHUNK] }]))).toBe(
      "BULWARK_PROTO_OFFSET_OUT_OF_RANGE",
    );
    expect(await codeOf(send([{ ...good(0), offsets: [100] }]))).toBe("BULWARK_PROTO_OFFSET_OUT_OF_RANGE");
    // Bad encodings: garbage zstd, a frame that inflates beyond the chunk, unknown encoding, short raw.
    expect(
      await codeOf(
        send([{ ...good(0), encoding: ChunkEncoding.CHUNK_ENCODING_ZSTD, payload: randomBytes(64) }]),
      ),
    ).toBe("BULWARK_PROTO_CHUNK_INVALID");
    const bomb = compress(Buffer.alloc(64 * CHUNK));
    expect(
      await codeOf(send([{ ...good(0), encoding: ChunkEncoding.CHUNK_ENCODING_ZSTD, payload: bomb }])),
    ).toBe("BULWARK_PROTO_CHUNK_INVALID");
    expect(await codeOf(send([{ ...good(0), encoding: ChunkEncoding.CHUNK_ENCODING_UNSPECIFIED }]))).toBe(
      "BULWARK_PROTO_CHUNK_INVALID",
    );
    expect(
      await codeOf(
        send([
          { ...good(0), encoding: ChunkEncoding.CHUNK_ENCODING_RAW, payload: volume.chunk(0).subarray(1) },
        ]),
      ),
    ).toBe("BULWARK_PROTO_CHUNK_INVALID");
    expect(await codeOf(send([{ ...good(0), id: Buffer.alloc(31) }]))).toBe("BULWARK_PROTO_CHUNK_INVALID");
    expect(await codeOf(send([{ ...good(0), offsets: [] }]))).toBe("BULWARK_PROTO_MALFORMED");
    expect(await codeOf(send([]))).toBe("BULWARK_PROTO_MALFORMED");
    // A batch over max_batch_bytes (but under the message limit).
    const raw = () => ({
      ...good(0),
      encoding: ChunkEncoding.CHUNK_ENCODING_RAW,
      payload: Buffer.from(volume.chunk(0)),
    });
    const over = Array.from({ length: MAX_UPLOAD_BATCH_BYTES / CHUNK + 1 }, () => raw());
    expect(await codeOf(send(over))).toBe("BULWARK_PROTO_BATCH_TOO_LARGE");
    // Another session name on the same stream, and an unknown session.
    expect(
      await codeOf(
        client.upload([
          { sessionId: "00000000-0000-4000-8000-000000000000", batchSeq: 1, chunks: [good(0)] },
        ]),
      ),
    ).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
    expect(
      await codeOf(
        client.upload([
          { sessionId, batchSeq: 1, chunks: [good(0)] },
          { sessionId: "other", batchSeq: 2, chunks: [good(1)] },
        ]),
      ),
    ).toBe("BULWARK_PROTO_MALFORMED");
    expect(await chunkRows()).toBe(before + 1); // only the good chunk 0 of the last stream

    // QueryMissing limits.
    expect(
      await codeOf(
        client.query(
          sessionId,
          Array.from({ length: MAX_QUERY_IDS + 1 }, () => Buffer.alloc(32, 1)),
        ),
      ),
    ).toBe("BULWARK_PROTO_MALFORMED");
    expect(await codeOf(client.query(sessionId, [Buffer.alloc(16)]))).toBe("BULWARK_PROTO_CHUNK_INVALID");

    // Commit faults: no header, wrong total, gap, wrong digest, runs past the end.
    const msgs = commitMessages(sessionId, volume, ids, 3);
    const header = msgs[0]!;
    const finish = msgs.at(-1)!;
    expect(await codeOf(client.commit(msgs.slice(1)))).toBe("BULWARK_PROTO_MALFORMED");
    expect(
      await codeOf(
        client.commit([
          { part: { $case: "header", value: { sessionId, totalChunks: 99 } } },
          ...msgs.slice(1),
        ]),
      ),
    ).toBe("BULWARK_PROTO_INDEX_INVALID");
    expect(await codeOf(client.commit([header, msgs[2]!, msgs[1]!, ...msgs.slice(3)]))).toBe(
      "BULWARK_PROTO_INDEX_INVALID",
    );
    expect(
      await codeOf(
        client.commit([
          ...msgs.slice(0, -1),
          { part: { $case: "finish", value: { indexDigest: Buffer.alloc(32), stats: undefined } } },
        ]),
      ),
    ).toBe("BULWARK_PROTO_INDEX_INVALID");
    expect(await codeOf(client.commit([header, finish]))).toBe("BULWARK_PROTO_INDEX_INVALID");
    expect(
      await codeOf(
        client.commit([
          header,
          ...msgs.slice(1, -1),
          {
            part: {
              $case: "index",
              value: { startIndex: volume.count, runs: [{ run: { $case: "zero", value: 1 } }] },
            },
          },
          finish,
        ]),
      ),
    ).toBe("BULWARK_PROTO_OFFSET_OUT_OF_RANGE");
    expect(await h.db.catalog.backup.count({ where: { jobId } })).toBe(0);

    // The session is still OPEN and completes normally.
    const { missing } = await client.query(
      sessionId,
      ids.map((id) => id!),
    );
    expect(missing).toEqual([1, 2, 3, 4, 5, 6]);
    await client.upload([{ sessionId, batchSeq: 9, chunks: missing.map((i) => good(i)) }]);
    const done = await client.commit(commitMessages(sessionId, volume, ids, 3));
    expect(done.restorePointId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("refuses a malicious batch of too many chunks or too much claimed plaintext before any work", async () => {
    const volume = Volume.random(2);
    const begin = await client.begin({
      jobId: await h.job(agent.id),
      volumeId: "vol-many",
      size: volume.size,
    });
    const { sessionId } = begin;
    // A 64 KiB chunk of one byte value: its zstd frame is a few bytes, its ID genuine.
    const plain = Buffer.alloc(CHUNK, 7);
    const id = createHmac("sha256", Buffer.from(begin.chunkIdScheme!.key)).update(plain).digest();
    const tiny = {
      id,
      offsets: [0],
      encoding: ChunkEncoding.CHUNK_ENCODING_ZSTD,
      plainSize: CHUNK,
      payload: compress(plain),
    };
    const batch = (count: number, session = sessionId) => [
      { sessionId: session, batchSeq: 1, chunks: Array.from({ length: count }, () => tiny) },
    ];
    const before = await chunkRows();

    // Far more chunks than allowed, in a message well under the size limit (~60 bytes a chunk).
    expect(await codeOf(client.upload(batch(100_000)))).toBe("BULWARK_PROTO_BATCH_TOO_LARGE");
    // Checked before the session is looked up: an unknown session gets the limit, not NOT_FOUND.
    expect(
      await codeOf(client.upload(batch(MAX_UPLOAD_BATCH_CHUNKS + 1, "00000000-0000-4000-8000-000000000000"))),
    ).toBe("BULWARK_PROTO_BATCH_TOO_LARGE");
    // Under the count limit, but the frames claim more plaintext than a batch may make the server inflate.
    const overPlain = MAX_UPLOAD_BATCH_PLAIN_BYTES / CHUNK + 1;
    expect(overPlain).toBeLessThanOrEqual(MAX_UPLOAD_BATCH_CHUNKS);
    expect(await codeOf(client.upload(batch(overPlain)))).toBe("BULWARK_PROTO_BATCH_TOO_LARGE");
    expect(await chunkRows()).toBe(before);

    // At the plaintext limit the batch is checked and stored as usual (one distinct chunk).
    const [ack] = await client.upload(batch(overPlain - 1));
    expect(ack).toMatchObject({ stored: 1, alreadyPresent: overPlain - 2 });
    expect(await chunkRows()).toBe(before + 1);
    expect((await client.query(sessionId, [id, Buffer.alloc(32, 9)])).missing).toEqual([1]);
  });

  it("refuses a message over the size limit before any handler runs", async () => {
    const volume = Volume.random(2);
    const begin = await client.begin({
      jobId: await h.job(agent.id),
      volumeId: "vol-big",
      size: volume.size,
    });
    const big = h.client(agent, { "grpc.max_send_message_length": -1 });
    const chunk = { ...wireChunk(volume, 0, Buffer.alloc(32)), payload: randomBytes(9 * 1024 * 1024) };
    expect(await codeOf(big.upload([{ sessionId: begin.sessionId, batchSeq: 1, chunks: [chunk] }]))).toBe(
      "BULWARK_PROTO_MESSAGE_TOO_LARGE",
    );
    big.close();
    // The session took no harm.
    expect((await client.query(begin.sessionId, [Buffer.alloc(32, 7)])).missing).toEqual([0]);
  });
});
