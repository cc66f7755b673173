import { BulwarkError } from "@bulwark/errors";
import { CHUNK_ID_BYTES, type IndexRun, type RestoreResponse, type RestoreWant } from "@bulwark/protocol";
import { chunkKey, isZeroId, type Repository, type TreeReader } from "@bulwark/repository";
import { type EncodedChunks, encodeChunks, encodedMessages, type WantedChunk } from "./encode-chunks.js";
import { openStoredPayload } from "./stored-payload.js";

// Serves the Want ranges of a restore (docs/protocol.md §3): which chunks the target needs (all of
// them, or for a delta restore those whose ID differs from what the agent says the target holds),
// read from the repository, authenticated, decrypted and encoded as Chunks messages on the read
// pool's workers, and sent as Zeros, those Chunks messages, then RangeDone. prepareRange plans a
// Want and starts its reads as soon as it arrives; sendRange sends it when its turn comes, so
// reading overlaps with sending. A chunk travels in its stored form (the repository's zstd frame,
// or raw): the server never decompresses or recompresses it, and the agent checks every chunk's
// keyed hash.

/**
 * Distinct chunks per read-pool request: small enough that the first Chunks message of a range
 * can leave while the rest of it is still being read, large enough to keep the hops few. A
 * group's chunks travel in their own Chunks messages (of up to CHUNKS_MESSAGE_BYTES each).
 */
const READ_GROUP_CHUNKS = 8;

export interface RangeTotals {
  chunksSent: number;
  chunksUnchanged: number;
  chunksZero: number;
  bytesSent: number;
}

export function emptyTotals(): RangeTotals {
  return { chunksSent: 0, chunksUnchanged: 0, chunksZero: 0, bytesSent: 0 };
}

/** What the target holds per chunk of a range: an ID, zero (null), or unknown (undefined, full mode). */
type Have = (Buffer | null | undefined)[];

function badRange(message: string, details: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_RESTORE_BAD_RANGE", message, { details });
}

/** The have runs of a Want as one entry per chunk; they must cover the range exactly. */
export function expandHave(runs: IndexRun[], count: number): Have {
  const have: Have = [];
  for (const r of runs) {
    if (!r.run) throw new BulwarkError("BULWARK_PROTO_MALFORMED", "a have run has no member set");
    if (r.run.$case === "zero") {
      if (!Number.isSafeInteger(r.run.value) || r.run.value < 1 || have.length + r.run.value > count) {
        throw badRange("have runs exceed the range", { count });
      }
      for (let k = 0; k < r.run.value; k++) have.push(null);
    } else {
      const ids = r.run.value;
      if (ids.length === 0 || ids.length % CHUNK_ID_BYTES !== 0) {
        throw new BulwarkError("BULWARK_PROTO_MALFORMED", "a have run's IDs are not a multiple of 32 bytes");
      }
      if (have.length + ids.length / CHUNK_ID_BYTES > count)
        throw badRange("have runs exceed the range", { count });
      for (let at = 0; at < ids.length; at += CHUNK_ID_BYTES)
        have.push(ids.subarray(at, at + CHUNK_ID_BYTES));
    }
  }
  if (have.length !== count) throw badRange(`have runs cover ${have.length} of ${count} chunks`, { count });
  return have;
}

/** Chunk IDs of [start, start + count) (ZERO_ID for zero chunks), leaf by leaf. */
async function idsOf(tree: TreeReader, start: number, count: number): Promise<Buffer[]> {
  const fanout = tree.geometry.fanout;
  const out: Buffer[] = [];
  let i = start;
  while (i < start + count) {
    const leaf = Math.floor(i / fanout);
    const entries = await tree.entries(0, leaf);
    const end = Math.min(start + count, (leaf + 1) * fanout);
    for (; i < end; i++) {
      const at = (i - leaf * fanout) * CHUNK_ID_BYTES;
      out.push(entries ? entries.subarray(at, at + CHUNK_ID_BYTES) : Buffer.alloc(CHUNK_ID_BYTES));
    }
  }
  return out;
}

/** A Want planned and its reads under way: what sendRange sends, in order. */
export interface PreparedRange {
  start: number;
  count: number;
  /** Zeros runs, sent first. */
  zeros: { startIndex: number; count: number }[];
  /**
   * Distinct contents in groups (`chunks`: the indexes they fill), each read, opened and encoded on
   * the read pool (settles, never unobserved).
   */
  groups: { chunks: number; encoded: Promise<EncodedChunks> }[];
  chunksUnchanged: number;
  chunksZero: number;
}

/** Reads, opens and encodes stored chunks, in order (the read pool, or the main thread in tests). */
export type ChunkLoader = (repo: Repository, wanted: WantedChunk[]) => Promise<EncodedChunks>;

/** Does on the main thread what the read pool's workers do, for callers without one. */
export const loadOnMainThread: ChunkLoader = async (repo, wanted) => {
  const blobs = await Promise.all(wanted.map((w) => repo.getObject(chunkKey(w.id), "chunk")));
  const stored = wanted.map((w, k) => openStoredPayload(blobs[k]!, w.id, repo.keys.dataKey, chunkKey(w.id)));
  return encodeChunks(wanted, stored);
};

/**
 * Plans one Want (already checked to lie inside the volume and the window): Zeros runs for zero
 * chunks the target does not hold as zeros, the distinct contents the target lacks, and starts
 * reading those at once, so the reads of several Wants overlap with sending earlier ones.
 */
export async function prepareRange(
  repo: Repository,
  tree: TreeReader,
  want: RestoreWant,
  delta: boolean,
  load: ChunkLoader,
): Promise<PreparedRange> {
  const { startIndex: start, count } = want;
  if (!delta && want.have.length > 0) throw badRange("a full restore sends no have runs", { start });
  const have: Have = delta ? expandHave(want.have, count) : [];
  const ids = await idsOf(tree, start, count);
  const range: PreparedRange = { start, count, zeros: [], groups: [], chunksUnchanged: 0, chunksZero: 0 };

  // One content may fill several chunks of the range: it travels once, with all its indexes.
  const wanted = new Map<string, WantedChunk>();
  let zeroRun: { startIndex: number; count: number } | undefined;
  for (let k = 0; k < count; k++) {
    const i = start + k;
    const id = ids[k]!;
    const target = have[k];
    if (isZeroId(id)) {
      if (target === null) {
        range.chunksUnchanged++;
        continue;
      }
      range.chunksZero++;
      if (zeroRun && zeroRun.startIndex + zeroRun.count === i) zeroRun.count++;
      else {
        zeroRun = { startIndex: i, count: 1 };
        range.zeros.push(zeroRun);
      }
      continue;
    }
    if (target?.equals(id)) {
      range.chunksUnchanged++;
      continue;
    }
    const key = id.toString("hex");
    const entry = wanted.get(key);
    if (entry) entry.indexes.push(i);
    else wanted.set(key, { id: Buffer.from(id), indexes: [i] });
  }
  const all = [...wanted.values()];
  for (let g = 0; g < all.length; g += READ_GROUP_CHUNKS) {
    const group = all.slice(g, g + READ_GROUP_CHUNKS);
    const encoded = load(repo, group);
    encoded.catch(() => {}); // raised by sendRange, in order
    range.groups.push({ chunks: group.reduce((n, w) => n + w.indexes.length, 0), encoded });
  }
  return range;
}

/**
 * Sends one message; `taken`, if given, runs once grpc-js has serialized (copied) it and written
 * it to the HTTP/2 stream, never if the write failed.
 */
export type SendMessage = (message: RestoreResponse | Buffer, taken?: () => void) => Promise<void>;

/**
 * Sends a prepared range: Zeros, each group's encoded Chunks messages, then RangeDone. A group's
 * buffer goes back to the read pool once grpc-js has taken its last message.
 */
export async function sendRange(range: PreparedRange, send: SendMessage): Promise<RangeTotals> {
  const totals: RangeTotals = {
    chunksSent: 0,
    chunksUnchanged: range.chunksUnchanged,
    chunksZero: range.chunksZero,
    bytesSent: 0,
  };
  for (const run of range.zeros) await send({ message: { $case: "zeros", value: run } });
  for (const group of range.groups) {
    const encoded = await group.encoded;
    const messages = encodedMessages(encoded);
    for (let k = 0; k < messages.length; k++)
      await send(messages[k]!, k === messages.length - 1 ? encoded.recycle : undefined);
    totals.chunksSent += group.chunks;
    totals.bytesSent += encoded.payloadBytes;
  }
  await send({
    message: {
      $case: "rangeDone",
      value: {
        startIndex: range.start,
        count: range.count,
        chunksSent: totals.chunksSent,
        chunksUnchanged: totals.chunksUnchanged,
      },
    },
  });
  return totals;
}
