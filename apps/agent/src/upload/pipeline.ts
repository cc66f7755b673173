import { CHUNK_ID_BYTES, MAX_OFFSETS_PER_CHUNK, type UploadChunksResponse } from "@bulwark/protocol";
import type { ChunkRun } from "../plan/chunk-runs.js";
import type { IndexCacheReader } from "../plan/index-cache.js";
import { chunkLength, type ReadPlan } from "../plan/read-plan.js";
import { frameBatch, headerRoom } from "./batch-codec.js";
import { type BlockReader, BufferPool } from "./block-reader.js";
import { GcPacer } from "./gc-pacer.js";
import type { IndexSpool } from "./index-spool.js";
import type { Throttle } from "./token-bucket.js";
import type { ChunkWorkerPool } from "./worker-pool.js";

const MiB = 1024 * 1024;

/**
 * A group is the unit of work: consecutive chunks read with one pread, hashed by one worker call,
 * queried with one QueryMissing. 4 MiB matches the protocol's default batch, so a group's missing
 * chunks usually travel as one UploadChunks batch.
 */
export const GROUP_BYTES = 4 * MiB;

/**
 * Groups in flight (read but not finished: hashing, asking, compressing, uploading, waiting for
 * the ack). This is the memory bound: 4 × 4 MiB of plaintext, plus each group's batches (at most
 * its plaintext's size) until grpc-js has sent them, whatever the volume size. runBackup raises it
 * to twice the stream count for more streams: bulwark-server acks each batch as soon as it is
 * durable, but a peer may hold a stream's ack until its next batch or half-close arrives (the
 * protocol does not forbid it), and with one batch per stream every group would then wait for the
 * ack watchdog. Deeper is not faster against bulwark-server: 10 groups measured no faster than 4
 * on the 1 GiB bench image (the server's CPU, not the window, sets the pace) and cost ~30 MB of RSS.
 */
export const DEFAULT_GROUPS_IN_FLIGHT = 4;

/**
 * A group whose chunks still to send fill at most this share of its read buffer copies them out
 * and hands the buffer and its place in the read window back before it asks the server or waits
 * for an ack. An incremental changes a chunk or two per 4 MiB group: holding the whole group for a
 * QueryMissing round trip and a durable ack made the read window, not the disk or the hash, set the
 * pace (3 GiB bench image, 1000 scattered writes: the main thread 71% idle, the worker 78%).
 */
export const HAND_OFF_SHARE = 1 / 4;

/**
 * Groups handed off and not yet finished (asking, sending, waiting for acks), by count and by the
 * bytes of the chunks they copied out. A second bound beside the read window, so memory stays
 * bounded however slow the acks: 16 MiB more at most, and 64 groups cover a few hundred
 * milliseconds of ack latency at the hash's speed.
 */
export const HANDED_OFF_GROUPS = 64;
export const HANDED_OFF_BYTES = 16 * MiB;

export interface UploadCounters {
  chunksTotal: number;
  /** Read and found all-zero, plus unused per the bitmap: recorded as zero runs, never sent. */
  chunksZero: number;
  /** Not read: unused per the bitmap, or unchanged per CBT. */
  chunksSkipped: number;
  /** Read, hashed and equal to the validated cache of the previous index: not even asked about. */
  chunksUnchanged: number;
  /** Asked about with QueryMissing (each time, including re-asks after a reconnect). */
  chunksQueried: number;
  /** Uploaded (each send counts, including re-sends after a reconnect). */
  chunksSent: number;
  bytesRead: number;
  bytesHashed: number;
  /** Payload bytes sent (compressed or raw): what the bandwidth limit applies to. */
  bytesSent: number;
  bytesSentPlain: number;
  batches: number;
}

export interface Progress {
  bytesDone: number;
  bytesTotal: number;
  counters: Readonly<UploadCounters>;
}

/** What the pipeline needs from the session (UploadSession implements it). */
export interface SessionPort {
  generation: number;
  readonly idKey: Buffer;
  readonly sessionId: string;
  readonly limits: { batchBytes: number; queryIds: number };
  queryMissing(ids: Buffer[]): Promise<number[]>;
  nextBatchSeq(): number;
  /** A serialized UploadChunksRequest; resolves once it is sent, with a promise of its ack. */
  writeBatch(
    batch: { batchSeq: number; bytes: Buffer },
    bytes: number,
  ): Promise<{ acked: Promise<UploadChunksResponse> }>;
  /** Called once every group has been read: the streams may be half-closed as batches finish. */
  finishWriting(): void;
  retrying<T>(work: () => Promise<T>): Promise<T>;
}

export interface UploadInput {
  /** The snapshot's bytes (read into pooled buffers). */
  source: BlockReader;
  plan: ReadPlan;
  session: SessionPort;
  pool: ChunkWorkerPool;
  spool: IndexSpool;
  throttle: Throttle;
  /** The validated cache of the previous committed index, when there is one. */
  cache?: IndexCacheReader;
  groupsInFlight?: number;
  onProgress?: (p: Progress) => void;
}

/**
 * IDs being uploaded by some group right now → settles when that upload is acked (or fails). Equal
 * chunks in different in-flight groups (ext4 metadata, repeated data) are then sent once: the
 * second group waits for the first one's ack instead of sending the same bytes again.
 */
type Uploading = Map<string, Promise<void>>;

/**
 * IDs acked in this run, most recent last. A QueryMissing answer can be computed just before
 * another group's ack and arrive after it; an ID acked meanwhile is durable, so it is not sent
 * again. 16 Ki IDs (~1.5 MiB) cover far more than the in-flight window (a few hundred chunks).
 */
const RECENTLY_ACKED_IDS = 16_384;

class RecentIds {
  private readonly ids = new Set<string>();
  add(key: string): void {
    this.ids.delete(key);
    this.ids.add(key);
    if (this.ids.size > RECENTLY_ACKED_IDS) this.ids.delete(this.ids.values().next().value as string);
  }
  has(key: string): boolean {
    return this.ids.has(key);
  }
}

/** What the groups of one upload share: dedup of in-flight IDs, and the GC pacing of sent batches. */
interface Dedup {
  uploading: Uploading;
  acked: RecentIds;
  pacer: GcPacer;
}

/** Candidate for upload within a group: one distinct ID, every position where it occurs, and
 * where its plaintext is in the group's current buffer. */
interface Candidate {
  id: Buffer;
  key: string;
  positions: number[];
  offset: number;
  length: number;
}

/**
 * read (into pooled buffers) → hash (workers) → skip zeros and unchanged-vs-cache → QueryMissing → compress (workers) →
 * UploadChunks (throttled, several streams) → ack. The index of every chunk goes to the spool as
 * soon as it is hashed. At most `groupsInFlight` groups exist at once; a full window stops the
 * reader, and a slow server stops the window from draining (acks come only when chunks are durable),
 * so memory stays bounded and backpressure reaches the disk.
 */
export async function uploadVolume(input: UploadInput): Promise<UploadCounters> {
  const { plan, spool } = input;
  const counters: UploadCounters = {
    chunksTotal: plan.chunkCount,
    chunksZero: 0,
    chunksSkipped: 0,
    chunksUnchanged: 0,
    chunksQueried: 0,
    chunksSent: 0,
    bytesRead: 0,
    bytesHashed: 0,
    bytesSent: 0,
    bytesSentPlain: 0,
    batches: 0,
  };
  let bytesDone = 0;
  const report = () => input.onProgress?.({ bytesDone, bytesTotal: plan.bytesToRead, counters });

  // Unused chunks stay zero in the spool; carried (CBT) chunks take their previous IDs.
  for (const run of plan.unused) {
    counters.chunksSkipped += run.count;
    counters.chunksZero += run.count;
  }
  for (const run of plan.carried) {
    if (!input.cache) throw new Error("a CBT plan carries chunks over but no validated cache was given");
    counters.chunksSkipped += run.count;
    await spool.write(run.first, await input.cache.read(run.first, run.count));
  }

  const reading = new Window(Math.max(1, input.groupsInFlight ?? DEFAULT_GROUPS_IN_FLIGHT), Infinity);
  const handedOff = new Window(HANDED_OFF_GROUPS, HANDED_OFF_BYTES);
  const dedup: Dedup = { uploading: new Map(), acked: new RecentIds(), pacer: new GcPacer() };
  const buffers = new BufferPool(Math.max(1, Math.floor(GROUP_BYTES / plan.chunkSize)) * plan.chunkSize);
  const running = new Set<Promise<void>>();
  let failure: unknown;
  for (const group of groups(plan)) {
    if (failure) break;
    await reading.acquire(0);
    if (failure) {
      reading.release(0);
      break;
    }
    // Reads are issued here, in volume order, one at a time: sequential I/O for the device.
    const offset = group.first * plan.chunkSize;
    const length = Math.min(plan.volumeSize, (group.first + group.count) * plan.chunkSize) - offset;
    const buffer = buffers.acquire();
    try {
      await input.source.readInto(buffer.subarray(0, length), offset);
    } catch (err) {
      reading.release(0);
      failure ??= err;
      break;
    }
    counters.bytesRead += length;
    let handedOffBytes: number | undefined;
    const handOff = async (readBuffer: Buffer, bytes: number) => {
      await handedOff.acquire(bytes);
      handedOffBytes = bytes;
      buffers.release(readBuffer);
      reading.release(0);
    };
    const task = processGroup(input, group, buffer, counters, dedup, handOff)
      .then((back) => {
        if (back) buffers.release(back);
        bytesDone += length;
        report();
      })
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => {
        if (handedOffBytes === undefined) reading.release(0);
        else handedOff.release(handedOffBytes);
      });
    const tracked = task.finally(() => running.delete(tracked));
    running.add(tracked);
  }
  if (!failure) input.session.finishWriting();
  await Promise.all(running);
  if (failure) throw failure;
  report();
  return counters;
}

/** At most `count` holders and `bytes` bytes at once (one holder may exceed the bytes alone). */
class Window {
  private holders = 0;
  private held = 0;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly count: number,
    private readonly bytes: number,
  ) {}

  async acquire(bytes: number): Promise<void> {
    while (this.holders >= this.count || (this.holders > 0 && this.held + bytes > this.bytes)) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    this.holders++;
    this.held += bytes;
  }

  release(bytes: number): void {
    this.holders--;
    this.held -= bytes;
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** The plan's read runs cut into groups of at most GROUP_BYTES (at least one chunk each). */
export function* groups(plan: ReadPlan): Generator<ChunkRun> {
  const perGroup = Math.max(1, Math.floor(GROUP_BYTES / plan.chunkSize));
  for (const run of plan.read) {
    for (let first = run.first; first < run.first + run.count; first += perGroup) {
      yield { first, count: Math.min(perGroup, run.first + run.count - first) };
    }
  }
}

/**
 * Hashes a group, records its IDs and uploads what the server is missing. Resolves with the read
 * buffer to reuse, or undefined once `handOff` took it (see HAND_OFF_SHARE): then the group goes
 * on with its own copy of the chunks it may still send.
 */
async function processGroup(
  input: UploadInput,
  group: ChunkRun,
  data: Buffer,
  counters: UploadCounters,
  dedup: Dedup,
  handOff: (readBuffer: Buffer, bytes: number) => Promise<void>,
): Promise<Buffer | undefined> {
  const { uploading, acked } = dedup;
  const { plan, session, pool } = input;
  const lengths = Array.from({ length: group.count }, (_, i) => chunkLength(plan, group.first + i));
  const hashed = await pool.hash(data, lengths);
  let buffer = hashed.buffer;
  counters.bytesHashed += lengths.reduce((n, l) => n + l, 0);

  const previous = input.cache ? await input.cache.read(group.first, group.count) : undefined;
  const offsets = chunkOffsets(lengths);
  const indexIds = Buffer.alloc(group.count * CHUNK_ID_BYTES);
  const byId = new Map<string, Candidate>();
  hashed.ids.forEach((id, i) => {
    if (!id) {
      counters.chunksZero++;
      return;
    }
    id.copy(indexIds, i * CHUNK_ID_BYTES);
    if (
      previous &&
      previous.compare(id, 0, CHUNK_ID_BYTES, i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES) === 0
    ) {
      counters.chunksUnchanged++;
      return;
    }
    const key = id.toString("hex");
    const c = byId.get(key);
    if (c) c.positions.push(i);
    else byId.set(key, { id, key, positions: [i], offset: offsets[i]!, length: lengths[i]! });
  });
  await input.spool.write(group.first, indexIds);
  const candidates = [...byId.values()];
  if (candidates.length === 0) return buffer;

  // Few chunks left after the compare with the cache: copy them out and hand the read buffer back
  // before the round trips to the server. All candidates are copied, as a retry after a reconnect
  // may have to send any of them. Without a cache (first backup, lost cache) every non-zero chunk
  // is a candidate and the group keeps its buffer, as it needs most of it.
  const neededBytes = candidates.reduce((n, c) => n + c.length, 0);
  const handsOff = neededBytes <= buffer.length * HAND_OFF_SHARE;
  if (handsOff) {
    const copy = Buffer.allocUnsafeSlow(neededBytes); // its own ArrayBuffer: transferred, not copied
    let at = 0;
    for (const c of candidates) {
      buffer.copy(copy, at, c.offset, c.offset + c.length);
      c.offset = at;
      at += c.length;
    }
    const readBuffer = buffer;
    buffer = copy;
    await handOff(readBuffer, neededBytes);
  }
  // Encoded afresh on every attempt (a retry sends what is missing then, under the current
  // session), so no encoded copy outlives its write: the group holds only its plaintext until acked.
  const sendMissing = async (missing: Candidate[]): Promise<void> => {
    if (missing.length === 0) return;
    const sessionId = session.sessionId;
    const encoded = await pool.encodeBatches(
      buffer,
      missing.map((c) => {
        return {
          offset: c.offset,
          length: c.length,
          id: new Uint8Array(c.id),
          volumeOffsets: c.positions
            .slice(0, MAX_OFFSETS_PER_CHUNK)
            .map((p) => (group.first + p) * plan.chunkSize),
        };
      }),
      session.limits.batchBytes,
      headerRoom(sessionId),
    );
    buffer = encoded.buffer;
    const acks: Promise<UploadChunksResponse>[] = [];
    // shift: a sent batch is garbage at once, not at the end of the group.
    for (let batch = encoded.batches.shift(); batch; batch = encoded.batches.shift()) {
      await input.throttle.take(batch.payloadBytes);
      const batchSeq = session.nextBatchSeq();
      const { acked } = await session.writeBatch(
        { batchSeq, bytes: frameBatch(batch, sessionId, batchSeq) },
        batch.payloadBytes,
      );
      // Sent (grpc-js framed its own copy), but grpc-js keeps a stream's first message for the
      // stream's life (ResolvingCall.pendingMessage): detach the bytes so they are freed now.
      const size = batch.bytes.byteLength;
      structuredClone(batch.bytes.buffer, { transfer: [batch.bytes.buffer as ArrayBuffer] });
      dedup.pacer.released(size);
      counters.batches++;
      counters.chunksSent += batch.chunks;
      counters.bytesSent += batch.payloadBytes;
      counters.bytesSentPlain += batch.plainBytes;
      acks.push(acked);
    }
    await Promise.all(acks);
  };
  await session.retrying(async () => {
    // Ask (again, after a reconnect): chunks acked before a cut are not sent twice.
    const missing: Candidate[] = [];
    const othersUploading: Promise<void>[] = [];
    for (let at = 0; at < candidates.length; at += session.limits.queryIds) {
      const slice = candidates.slice(at, at + session.limits.queryIds);
      counters.chunksQueried += slice.length;
      for (const pos of await session.queryMissing(slice.map((c) => c.id))) {
        const c = slice[pos];
        if (!c) throw new Error(`QueryMissing answered position ${pos} of ${slice.length}`);
        const other = uploading.get(c.key);
        if (other) othersUploading.push(other);
        else if (!acked.has(c.key)) missing.push(c);
      }
    }
    // Claim what this group sends; settled below whatever happens, so no group waits forever.
    let settle!: (err?: unknown) => void;
    const mine = new Promise<void>((resolve, reject) => {
      settle = (err) => (err ? reject(err) : resolve());
    });
    mine.catch(() => {});
    for (const c of missing) uploading.set(c.key, mine);
    try {
      await sendMissing(missing);
      for (const c of missing) acked.add(c.key);
      settle();
    } catch (err) {
      settle(err);
      throw err;
    } finally {
      for (const c of missing) if (uploading.get(c.key) === mine) uploading.delete(c.key);
    }
    // A chunk another group was sending: its failure fails us too, and the retry asks again.
    await Promise.all(othersUploading);
  });
  return handsOff ? undefined : buffer; // the latest (transferred back) read buffer, for the pool
}

function chunkOffsets(lengths: number[]): number[] {
  const out: number[] = [];
  let at = 0;
  for (const l of lengths) {
    out.push(at);
    at += l;
  }
  return out;
}
