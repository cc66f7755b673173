import { BulwarkError } from "@bulwark/errors";
import {
  CHUNK_ID_BYTES,
  type Chunk,
  ChunkEncoding,
  chunkLength,
  MAX_OFFSETS_PER_CHUNK,
  MAX_UPLOAD_BATCH_BYTES,
  MAX_UPLOAD_BATCH_CHUNKS,
  MAX_UPLOAD_BATCH_PLAIN_BYTES,
  type UploadChunksRequest,
  type UploadChunksResponse,
} from "@bulwark/protocol";
import type { AgentIdentity } from "../grpc/identity.js";
import type { OpenRepository } from "../repositories/registry.js";
import { storeChunks, type UploadedChunk } from "./chunk-store.js";
import {
  type IngestContext,
  openSession,
  type ReceivedCounts,
  recordActivity,
  type SessionRow,
  sessionRepository,
} from "./sessions.js";

// One UploadChunks stream: each batch is checked whole, stored whole, then acked. A bad batch
// ends the stream with its error and stores nothing of itself; earlier acked batches stay
// durable and the session stays OPEN for a new stream (docs/protocol.md §8).

export interface UploadStream {
  /** Handles one batch; resolves to its ack once every chunk is durable. */
  batch(req: UploadChunksRequest): Promise<UploadChunksResponse>;
}

function chunkInvalid(message: string, details: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_PROTO_CHUNK_INVALID", message, { details });
}

function batchTooLarge(message: string, details: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_PROTO_BATCH_TOO_LARGE", message, { details });
}

/**
 * The batch's size limits (docs/protocol.md §5, §8), checked from the decoded message alone before
 * any work for it (session lookup, allocation per chunk, decompression): a hostile batch costs the
 * server its decoding and nothing more. The decoder stops at one chunk past the count limit.
 */
export function checkBatchLimits(req: UploadChunksRequest): void {
  if (req.chunks.length === 0)
    throw new BulwarkError("BULWARK_PROTO_MALFORMED", "a batch holds at least one chunk");
  if (req.chunks.length > MAX_UPLOAD_BATCH_CHUNKS) {
    throw batchTooLarge(`a batch holds at most ${MAX_UPLOAD_BATCH_CHUNKS} chunks`, {
      maxChunks: MAX_UPLOAD_BATCH_CHUNKS,
    });
  }
  let payloadBytes = 0;
  let plainBytes = 0;
  for (const c of req.chunks) {
    payloadBytes += c.payload.length;
    plainBytes += c.plainSize;
  }
  if (payloadBytes > MAX_UPLOAD_BATCH_BYTES) {
    throw batchTooLarge(
      `batch payload is ${payloadBytes} bytes; at most ${MAX_UPLOAD_BATCH_BYTES} are accepted`,
      { payloadBytes },
    );
  }
  if (plainBytes > MAX_UPLOAD_BATCH_PLAIN_BYTES) {
    throw batchTooLarge(
      `batch claims ${plainBytes} bytes of plaintext; at most ${MAX_UPLOAD_BATCH_PLAIN_BYTES} are accepted`,
      { plainBytes },
    );
  }
}

/**
 * Checks one chunk's fields against the session's geometry. Its payload is checked (decompressed
 * into at most the chunk's length, then hashed) by the codec workers in storeChunks.
 */
function verifyChunk(session: SessionRow, chunk: Chunk, position: number): UploadedChunk {
  const where = { position };
  if (chunk.id.length !== CHUNK_ID_BYTES) {
    throw chunkInvalid(`chunk ${position}: ID is ${chunk.id.length} bytes, not 32`, where);
  }
  if (chunk.offsets.length === 0 || chunk.offsets.length > MAX_OFFSETS_PER_CHUNK) {
    throw new BulwarkError(
      "BULWARK_PROTO_MALFORMED",
      `chunk ${position}: lists ${chunk.offsets.length} offsets; 1 to ${MAX_OFFSETS_PER_CHUNK} are allowed`,
      { details: where },
    );
  }
  const size = Number(session.volumeSize);
  const chunkSize = session.chunkSize;
  let length = -1;
  for (const offset of chunk.offsets) {
    if (!Number.isSafeInteger(offset) || offset % chunkSize !== 0 || offset >= size) {
      throw new BulwarkError(
        "BULWARK_PROTO_OFFSET_OUT_OF_RANGE",
        `chunk ${position}: offset ${offset} is not a multiple of ${chunkSize} below the volume size ${size}`,
        { details: { ...where, offset } },
      );
    }
    const here = chunkLength(size, chunkSize, offset / chunkSize);
    if (length !== -1 && here !== length) {
      throw chunkInvalid(`chunk ${position}: its offsets have chunks of different lengths`, where);
    }
    length = here;
  }
  if (chunk.plainSize !== length) {
    throw chunkInvalid(
      `chunk ${position}: plain_size ${chunk.plainSize} but the chunk at its offset has ${length} bytes`,
      {
        ...where,
        plainSize: chunk.plainSize,
        expected: length,
      },
    );
  }
  const zstd = chunk.encoding === ChunkEncoding.CHUNK_ENCODING_ZSTD;
  if (!zstd && chunk.encoding !== ChunkEncoding.CHUNK_ENCODING_RAW) {
    throw chunkInvalid(`chunk ${position}: encoding ${chunk.encoding} is not RAW or ZSTD`, where);
  }
  if (!zstd && chunk.payload.length !== length) {
    throw chunkInvalid(
      `chunk ${position}: raw payload is ${chunk.payload.length} bytes, the chunk has ${length}`,
      where,
    );
  }
  return { id: Buffer.from(chunk.id), payload: chunk.payload, plainSize: length, zstd };
}

/**
 * Counts a stored batch in its session, in the UPDATE that also checks the session still takes
 * batches (OPEN, not expired): a batch on a session aborted, committed or expired meanwhile is
 * not acked and not counted (its chunks stay in the repository, as an abort's do). A refused
 * update is looked up again for the precise error.
 */
async function countBatch(
  ctx: IngestContext,
  agent: AgentIdentity,
  sessionId: string,
  received: ReceivedCounts,
): Promise<void> {
  if (await recordActivity(ctx, sessionId, received, true)) return;
  await openSession(ctx, agent, sessionId); // throws SESSION_CLOSED / SESSION_NOT_FOUND
  if (!(await recordActivity(ctx, sessionId, received, true))) {
    throw new BulwarkError("BULWARK_PROTO_SESSION_NOT_FOUND", `backup session ${sessionId} has expired`, {
      details: { sessionId },
    });
  }
}

export function openUploadStream(ctx: IngestContext, agent: AgentIdentity): UploadStream {
  /** Fixed by the first message, synchronously, so that batches handled side by side agree. */
  let streamSession: string | undefined;
  /**
   * The stream's session, looked up (ownership, state, geometry) by its first batch. Later batches
   * are checked where they are counted (countBatch), which saves a catalog round trip per batch.
   */
  let session: Promise<SessionRow> | undefined;
  let repository: Promise<OpenRepository> | undefined;
  return {
    async batch(req) {
      checkBatchLimits(req);
      streamSession ??= req.sessionId;
      if (req.sessionId !== streamSession) {
        throw new BulwarkError(
          "BULWARK_PROTO_MALFORMED",
          "every message of an UploadChunks stream names the same session",
        );
      }
      session ??= openSession(ctx, agent, req.sessionId);
      const row = await session;
      repository ??= sessionRepository(ctx, row);
      const target = await repository;
      const payloadBytes = req.chunks.reduce((n, c) => n + c.payload.length, 0);
      const plains = req.chunks.map((chunk, i) => verifyChunk(row, chunk, i));
      const result = await storeChunks(target, plains);
      // Acked only if the session still takes batches (a session aborted or expired meanwhile accepts nothing more).
      await countBatch(ctx, agent, row.id, {
        chunks: req.chunks.length,
        bytes: payloadBytes,
        newBytes: result.newPlainBytes,
        storedBytes: result.newStoredBytes,
      });
      return { batchSeq: req.batchSeq, stored: result.stored, alreadyPresent: result.alreadyPresent };
    },
  };
}
