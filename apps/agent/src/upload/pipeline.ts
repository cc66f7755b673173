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
 * Groups handed off and not yet finished (waiting for their merged send's acks): a second bound
 * beside the read window. Their chunks sit in the merger's buffers (MERGED_IN_FLIGHT + 1 of
 * MERGED_BYTES), so memory stays bounded however slow the acks; 64 groups cover a few hundred
 * milliseconds of ack latency at the hash's speed.
 */
export const HANDED_OFF_GROUPS = 64;

/** Merged sends of handed-off chunks at once (see Merger), and the most one takes (a batch). */
const MERGED_IN_FLIGHT = 2;
const MERGED_BYTES = 4 * MiB;

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

/** Candidate for upload: one distinct ID, the volume offsets where it occurs (at most
 * MAX_OFFSETS_PER_CHUNK), and where its plaintext is in the buffer it is sent from. */
interface Candidate {
  id: Buffer;
  key: string;
  volumeOffsets: number[];
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

  const reading = new Slots(Math.max(1, input.groupsInFlight ?? DEFAULT_GROUPS_IN_FLIGHT));
  const handedOff = new Slots(HANDED_OFF_GROUPS);
  const dedup: Dedup = { uploading: new Map(), acked: new RecentIds(), pacer: new GcPacer() };
  const merger = new Merger((candidates, buffer) => askAndSend(input, candidates, buffer, counters, dedup));
  const buffers = new BufferPool(Math.max(1, Math.floor(GROUP_BYTES / plan.chunkSize)) * plan.chunkSize);
  const running = new Set<Promise<void>>();
  let failure: unknown;
  for (const group of groups(plan)) {
    if (failure) break;
    await reading.acquire();
    if (failure) {
      reading.release();
      break;
    }
    // Reads are issued here, in volume order, one at a time: sequential I/O for the device.
    const offset = group.first * plan.chunkSize;
    const length = Math.min(plan.volumeSize, (group.first + group.count) * plan.chunkSize) - offset;
    const buffer = buffers.acquire();
    try {
      await input.source.readInto(buffer.subarray(0, length), offset);
    } catch (err) {
      reading.release();
      failure ??= err;
      break;
    }
    counters.bytesRead += length;
    let handedOffNow = false;
    const handOff = async (readBuffer: Buffer) => {
      await handedOff.acquire();
      handedOffNow = true;
      buffers.release(readBuffer);
      reading.release();
    };
    const task = processGroup(input, group, buffer, counters, dedup, merger, handOff)
      .then((back) => {
        if (back) buffers.release(back);
        bytesDone += length;
        report();
      })
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => {
        if (handedOffNow) handedOff.release();
        else reading.release();
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

/** At most `count` holders at once; the others wait in turn. */
class Slots {
  private holders = 0;
  private waiters: (() => void)[] = [];

  constructor(private readonly count: number) {}

  async acquire(): Promise<void> {
    while (this.holders >= this.count) await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.holders++;
  }

  release(): void {
    this.holders--;
    this.waiters.shift()?.();
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
 * buffer to reuse, or undefined once `handOff` took it (see HAND_OFF_SHARE): then the group's
 * chunks still to send go to the merger as a copy, and the group ends when they are on the server.
 */
async function processGroup(
  input: UploadInput,
  group: ChunkRun,
  data: Buffer,
  counters: UploadCounters,
  dedup: Dedup,
  merger: Merger,
  handOff: (readBuffer: Buffer) => Promise<void>,
): Promise<Buffer | undefined> {
  const { plan, pool } = input;
  const lengths = Array.from({ length: group.count }, (_, i) => chunkLength(plan, group.first + i));
  const hashed = await pool.hash(data, lengths);
  const buffer = hashed.buffer;
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
    const volumeOffset = (group.first + i) * plan.chunkSize;
    const c = byId.get(key);
    if (!c)
      byId.set(key, { id, key, volumeOffsets: [volumeOffset], offset: offsets[i]!, length: lengths[i]! });
    else if (c.volumeOffsets.length < MAX_OFFSETS_PER_CHUNK) c.volumeOffsets.push(volumeOffset);
  });
  await input.spool.write(group.first, indexIds);
  const candidates = [...byId.values()];
  if (candidates.length === 0) return buffer;

  // Few chunks left after the compare with the cache: copy them out, hand the read buffer back
  // and let the merger ask about and send them with other handed-off groups' chunks. All
  // candidates are copied, as a retry after a reconnect may have to send any of them. Without a
  // cache (first backup, lost cache) every non-zero chunk is a candidate and the group keeps its
  // buffer, as it needs most of it.
  const neededBytes = candidates.reduce((n, c) => n + c.length, 0);
  if (neededBytes > buffer.length * HAND_OFF_SHARE || neededBytes > MERGED_BYTES) {
    return await askAndSend(input, candidates, buffer, counters, dedup);
  }
  const { onServer } = await merger.add(candidates, buffer, neededBytes);
  await handOff(buffer);
  await onServer;
  return undefined;
}

/**
 * Handed-off groups' chunks, asked about and sent together. One QueryMissing and one batch per
 * handed-off group cost the server a round trip, a batch's catalog updates and a durable write
 * each for a chunk or two: an incremental's scattered changes became hundreds of tiny batches.
 * A group's chunks are copied straight from its read buffer into the merge being filled; at most
 * MERGED_IN_FLIGHT merges are being sent at once (each until acked), and what arrives meanwhile
 * goes together in the next one (group commit). The MERGED_IN_FLIGHT + 1 merge buffers are reused:
 * a fresh copy per group left megabytes of dead external memory between garbage collections (the
 * bench incremental's peak RSS rose from ~125 to ~185 MB).
 */
class Merger {
  private filling: Merge | undefined;
  private readonly spare: Buffer[] = [];
  private inFlight = 0;
  private waiters: (() => void)[] = [];

  constructor(private readonly send: (candidates: Candidate[], buffer: Buffer) => Promise<Buffer>) {}

  /**
   * Copies the candidates' bytes out of `from` (their offsets are rewritten to the merge's) and
   * resolves, once copied, with a promise that settles when they are on the server (wrapped: an
   * async function's promise would adopt it).
   */
  async add(candidates: Candidate[], from: Buffer, bytes: number): Promise<{ onServer: Promise<void> }> {
    for (;;) {
      const merge = this.filling ?? this.startMerge();
      if (merge.used + bytes <= merge.buffer.length) {
        for (const c of candidates) {
          from.copy(merge.buffer, merge.used, c.offset, c.offset + c.length);
          const same = merge.byKey.get(c.key);
          if (same) {
            for (const o of c.volumeOffsets)
              if (same.volumeOffsets.length < MAX_OFFSETS_PER_CHUNK) same.volumeOffsets.push(o);
          } else merge.byKey.set(c.key, { ...c, offset: merge.used });
          merge.used += c.length;
        }
        const onServer = new Promise<void>((resolve, reject) => merge.members.push({ resolve, reject }));
        onServer.catch(() => {}); // the group awaits it once it has handed its buffer off
        this.next();
        return { onServer };
      }
      // Full: send it if a slot is free and start another, else wait for a send to finish.
      this.next();
      if (this.filling === merge) await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** A new merge to fill: a buffer of an acked merge, or a new one (at most MERGED_IN_FLIGHT + 1 exist). */
  private startMerge(): Merge {
    const buffer = this.spare.pop() ?? Buffer.allocUnsafeSlow(MERGED_BYTES); // own ArrayBuffer: transferred
    this.filling = { buffer, used: 0, byKey: new Map(), members: [] };
    return this.filling;
  }

  /** Sends the merge being filled if a send slot is free. */
  private next(): void {
    const merge = this.filling;
    if (!merge || merge.used === 0 || this.inFlight >= MERGED_IN_FLIGHT) return;
    this.filling = undefined;
    this.inFlight++;
    this.send([...merge.byKey.values()], merge.buffer)
      .then(
        (back) => {
          if (back.byteOffset === 0 && back.length === MERGED_BYTES) this.spare.push(back);
          for (const m of merge.members) m.resolve();
        },
        (err: unknown) => {
          for (const m of merge.members) m.reject(err);
        },
      )
      .finally(() => {
        this.inFlight--;
        this.next();
        for (const wake of this.waiters.splice(0)) wake();
      });
  }
}

interface Merge {
  buffer: Buffer;
  used: number;
  byKey: Map<string, Candidate>;
  members: { resolve: () => void; reject: (err: unknown) => void }[];
}

/**
 * Asks the server which candidates it lacks and uploads those from `buffer` (transferred to a
 * worker and back: resolves with the buffer to use from then on), retrying after a reconnect.
 */
async function askAndSend(
  input: UploadInput,
  candidates: Candidate[],
  from: Buffer,
  counters: UploadCounters,
  dedup: Dedup,
): Promise<Buffer> {
  const { uploading, acked } = dedup;
  const { session, pool } = input;
  let buffer = from;
  // Encoded afresh on every attempt (a retry sends what is missing then, under the current
  // session), so no encoded copy outlives its write: only the plaintext is held until acked.
  const sendMissing = async (missing: Candidate[]): Promise<void> => {
    if (missing.length === 0) return;
    const sessionId = session.sessionId;
    const encoded = await pool.encodeBatches(
      buffer,
      missing.map((c) => ({
        offset: c.offset,
        length: c.length,
        id: new Uint8Array(c.id),
        volumeOffsets: c.volumeOffsets,
      })),
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
    // Claim what this send uploads; settled below whatever happens, so nobody waits forever.
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
    // A chunk another send was uploading: its failure fails us too, and the retry asks again.
    await Promise.all(othersUploading);
  });
  return buffer;
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
