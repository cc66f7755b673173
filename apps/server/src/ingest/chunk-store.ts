import { BulwarkError } from "@bulwark/errors";
import { ownsUploadBuffer } from "@bulwark/protocol";
import {
  chunkKey,
  claimChunk,
  type HashTicket,
  idToHex,
  LocalBackend,
  type Repository,
  StagedWriter,
} from "@bulwark/repository";
import type { OpenRepository } from "../repositories/registry.js";

// Stores one batch of uploaded chunks durably, following the repository's ingest rules
// (docs/repository-format.md, "Ingest" and "Write ordering and crash safety"). The codec workers
// do the byte work (never the event loop): decompress each payload into at most its chunk's
// length, hash it, and refuse the whole batch if any chunk is not what it claims; index hits are
// confirmed by touching the chunk file (a chunk GC moved to the trash is moved back); the rest are
// encoded straight into hidden temp files (an agent's zstd frame is stored as the payload, not
// compressed again) and published by the repository's group commit: one barrier makes the chunk
// files of every stream's batches durable at once, then they get their names. Only then are they
// recorded in the chunk index, and only then does this resolve (and the batch get its ack).

export interface UploadedChunk {
  id: Buffer;
  /**
   * The chunk's bytes, or a zstd frame of them (`zstd`); checked in a worker. Read only until
   * storeChunks hands the request's buffer to the worker (then this view is empty).
   */
  payload: Uint8Array;
  plainSize: number;
  zstd: boolean;
}

export interface StoreResult {
  /** Chunks this batch wrote. */
  stored: number;
  /** Chunks that were already in the repository. */
  alreadyPresent: number;
  /** Plaintext bytes of the chunks this batch wrote. */
  newPlainBytes: number;
  /** Bytes of the chunk files this batch wrote (encrypted blobs, as stored). */
  newStoredBytes: number;
}

/**
 * One staged writer per repository, shared by every upload stream on this node: while one barrier
 * runs, the chunk files staged meanwhile wait for the next, so N streams pay one barrier, not N
 * (group commit). It publishes as soon as no barrier runs: an ack waits for a barrier, never a timer.
 */
const writers = new WeakMap<Repository, StagedWriter>();

function writerFor(repo: Repository): StagedWriter {
  let writer = writers.get(repo);
  if (!writer) {
    writer = new StagedWriter(repo.backend);
    writer.drain();
    writers.set(repo, writer);
  }
  return writer;
}

export async function storeChunks(
  target: OpenRepository,
  chunks: readonly UploadedChunk[],
): Promise<StoreResult> {
  const { repo, index } = target;
  // A request decoded by the server's decoder owns its message buffer: it goes to the worker whole.
  const message = chunks[0]?.payload.buffer;
  const unpacked = await repo.pool.unpack(
    chunks.map((c) => ({ payload: c.payload, plainSize: c.plainSize, zstd: c.zstd })),
    message && ownsUploadBuffer(message) ? (message as ArrayBuffer) : undefined,
  );
  if ("invalid" in unpacked) {
    const { position, message } = unpacked.invalid;
    throw new BulwarkError("BULWARK_PROTO_CHUNK_INVALID", `chunk ${position}: ${message}`, {
      details: { position },
    });
  }
  const ticket = unpacked;
  const bad = chunks.findIndex((c, i) => !ticket.ids[i]!.equals(c.id));
  if (bad >= 0) {
    await repo.pool.encode(ticket, []); // releases the batch held in the worker
    throw new BulwarkError(
      "BULWARK_PROTO_CHUNK_ID_MISMATCH",
      `chunk ${bad} of the batch does not hash to its ID; nothing of the batch was stored`,
      { details: { position: bad, id: idToHex(chunks[bad]!.id) } },
    );
  }
  // The first occurrence of each ID in the batch does the work; repeats count as present.
  const firstOf = new Map<string, number>();
  chunks.forEach((c, i) => {
    const hex = idToHex(c.id);
    if (!firstOf.has(hex)) firstOf.set(hex, i);
  });
  const unique = [...firstOf.values()];
  let toWrite: number[];
  try {
    const known = await index.has(unique.map((i) => chunks[i]!.id));
    const confirmed = await Promise.all(
      unique.map((i, k) => (known[k] ? claimChunk(repo.backend, chunks[i]!.id) : false)),
    );
    toWrite = unique.filter((_, k) => !confirmed[k]);
  } catch (err) {
    await repo.pool.encode(ticket, []).catch(() => undefined);
    throw err;
  }
  const { sizes, done } = await stage(repo, ticket, toWrite);
  // false: already there (another stream, or an index that lagged the files), and claimed by the
  // publish itself (touched, or written again if GC took it meanwhile), so GC keeps it.
  const created = await Promise.all(done);
  await index.record(
    toWrite.map((i, k) => ({ id: chunks[i]!.id, plainSize: chunks[i]!.plainSize, storedSize: sizes[k]! })),
  );
  let stored = 0;
  let newPlainBytes = 0;
  let newStoredBytes = 0;
  created.forEach((c, k) => {
    if (c) {
      stored++;
      newPlainBytes += chunks[toWrite[k]!]!.plainSize;
      newStoredBytes += sizes[k]!;
    }
  });
  return { stored, alreadyPresent: chunks.length - stored, newPlainBytes, newStoredBytes };
}

/**
 * Encodes the chunks at positions `which` and stages them with the repository's writer; `done[k]`
 * settles once a barrier made chunk k durable under its name (true if this call created it). On the
 * local backend the workers write the temp files themselves: no blob crosses this thread.
 */
async function stage(
  repo: Repository,
  ticket: HashTicket,
  which: number[],
): Promise<{ sizes: number[]; done: Promise<boolean>[] }> {
  const backend = repo.backend;
  const writer = writerFor(repo);
  const keys = which.map((i) => chunkKey(ticket.ids[i]!));
  if (backend instanceof LocalBackend) {
    const tmps = keys.map((k) => backend.tempPathFor(k));
    const sizes = await repo.pool.encodeToFiles(ticket, which, tmps);
    const puts = await Promise.all(
      sizes.map((n, k) => writer.adopt(backend.adoptStaged(keys[k]!, tmps[k]!, n))),
    );
    return { sizes, done: puts.map((p) => p.done) };
  }
  const blobs = await repo.pool.encode(ticket, which);
  const puts = await Promise.all(blobs.map((blob, k) => writer.put(keys[k]!, blob)));
  for (const p of puts) p.done.catch(() => undefined); // awaited by the caller; not unhandled meanwhile
  return { sizes: blobs.map((b) => b.length), done: puts.map((p) => p.done) };
}
