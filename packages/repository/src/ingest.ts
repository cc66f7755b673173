import { hostname } from "node:os";
import { BulwarkError } from "@bulwark/errors";
import { BlobKind } from "./blob.js";
import { chunkKey, claimChunk } from "./chunk-index.js";
import type { HashTicket } from "./codec-pool.js";
import {
  CODEC_BATCH_BYTES,
  FILE_SCAN_BATCH_BYTES,
  INGEST_MAX_IN_FLIGHT_BYTES,
  SESSION_HEARTBEAT_MS,
} from "./constants.js";
import { type ChunkId, ID_BYTES, idToHex, isAllZero, isZeroId, ZERO_ID } from "./ids.js";
import { entryCount, type Geometry, geometry, span } from "./index-tree.js";
import { LocalBackend } from "./local-backend.js";
import type { RestorePoint, SessionRecord } from "./records.js";
import { newRecordId, type Repository } from "./repository.js";
import { StagedWriter } from "./staged-writer.js";
import { TreeReader } from "./tree-reader.js";

/**
 * Ingest: turns writes of (offset, data) and references to existing chunks into a new restore
 * point (spec, "Write ordering and crash safety"). One session is used by one caller at a time
 * (await each write); any number of sessions, verify, GC and prune may run beside it.
 *
 * Chunks not written or referenced keep the base point's content (incremental), or are zero.
 */
export interface IngestOptions {
  /** Volume name (prune applies retention per name). */
  name: string;
  volumeSize: number;
  chunkSize?: number;
  fanout?: number;
  /** Restore point to inherit unwritten chunks from; same volume size, chunk size and fanout. */
  base?: string;
  labels?: Record<string, string>;
}

interface DirtyLeaf {
  entries: Buffer;
  set: Uint8Array;
  count: number;
  /** Node whose entries fill unset slots (the leaf was finished once, then written again). */
  fallback: Promise<Buffer> | null;
}

export class IngestSession {
  readonly id: string;
  readonly geometry: Geometry;
  private state: "open" | "committing" | "closed" = "open";
  private failure: unknown;
  private readonly dirty = new Map<number, DirtyLeaf>();
  private readonly finished = new Map<number, Promise<Buffer>>();
  /** Chunks this session stored or confirmed: hex → settles once durable. */
  private readonly known = new Map<string, Promise<void>>();
  private readonly tasks = new Set<Promise<void>>();
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  private heartbeat: NodeJS.Timeout | undefined;
  private baseTree: TreeReader | null = null;
  /** New chunks and index nodes: staged, then made durable in batches. */
  private readonly writer: StagedWriter;
  /** zeroChunks counts zero chunks this session wrote (inherited ones are not re-counted). */
  private readonly stats = { zeroChunks: 0, newChunks: 0, newStoredBytes: 0 };

  private constructor(
    private readonly repo: Repository,
    private readonly opts: IngestOptions,
    private readonly base: RestorePoint | null,
  ) {
    this.id = newRecordId();
    this.geometry = geometry(
      opts.volumeSize,
      opts.chunkSize ?? repo.config.chunkSize,
      opts.fanout ?? repo.config.indexFanout,
    );
    if (base) this.baseTree = new TreeReader(repo, base);
    this.writer = new StagedWriter(repo.backend);
  }

  static async open(repo: Repository, opts: IngestOptions): Promise<IngestSession> {
    if (typeof opts.name !== "string" || opts.name.length === 0 || opts.name.length > 256) {
      throw new BulwarkError(
        "BULWARK_REPO_INVALID_ARGUMENT",
        "a restore point needs a name of 1 to 256 characters",
      );
    }
    const base = opts.base ? await repo.readPoint(opts.base) : null;
    const session = new IngestSession(repo, opts, base);
    const g = session.geometry;
    if (
      base &&
      (base.volumeSize !== g.volumeSize || base.chunkSize !== g.chunkSize || base.fanout !== g.fanout)
    ) {
      throw new BulwarkError(
        "BULWARK_REPO_INVALID_ARGUMENT",
        "the base restore point has another volume size, chunk size or fanout; make a full backup",
      );
    }
    const record: SessionRecord = {
      format: "bulwark-ingest-session",
      version: 1,
      id: session.id,
      startedAt: new Date(repo.clock.now()).toISOString(),
      host: hostname(),
      pid: process.pid,
      bases:
        base && !repo.rootIsZero(base)
          ? [{ root: base.root, volumeSize: base.volumeSize, chunkSize: base.chunkSize, fanout: base.fanout }]
          : [],
    };
    await repo.writeRecord(BlobKind.Session, `sessions/${session.id}`, session.id, record);
    await session.beat();
    // The base must still exist after our record is durable: then GC either sees our record
    // (and marks the base) or listed the base among the points (spec, GC step 2).
    if (base && !(await repo.pointExists(base.id))) {
      await session.removeRecord();
      throw new BulwarkError("BULWARK_REPO_BASE_GONE", `base restore point ${base.id} was pruned`);
    }
    session.heartbeat = setInterval(() => {
      session.beat().catch(() => {}); // a missed beat is harmless; a long outage makes GC treat us as dead
    }, SESSION_HEARTBEAT_MS);
    session.heartbeat.unref();
    return session;
  }

  private async beat(): Promise<void> {
    await this.repo.backend.replace(`sessions/${this.id}.alive`, Buffer.from(new Date().toISOString()));
  }

  private async removeRecord(): Promise<void> {
    clearInterval(this.heartbeat);
    await this.repo.backend.delete(`sessions/${this.id}`);
    await this.repo.backend.delete(`sessions/${this.id}.alive`);
  }

  private ensureOpen(): void {
    if (this.failure) throw this.failure;
    if (this.state !== "open") {
      throw new BulwarkError("BULWARK_REPO_SESSION_CLOSED", `ingest session ${this.id} is ${this.state}`);
    }
  }

  /**
   * Writes volume bytes at offset: offset aligned to the chunk size, length a multiple of it (or
   * reaching the volume end). Resolves once the data is copied and in-flight work is under the
   * memory bound; the buffer may be reused then.
   */
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.ensureOpen();
    this.requireAlignedRange("write", offset, data.length);
    const { chunkSize } = this.geometry;
    let batch: { index: number; data: Uint8Array }[] = [];
    let batchBytes = 0;
    for (let off = 0; off < data.length; off += chunkSize) {
      const chunk = data.subarray(off, Math.min(off + chunkSize, data.length));
      const index = (offset + off) / chunkSize;
      if (isAllZero(chunk)) {
        this.setEntry(index, ZERO_ID);
        continue;
      }
      batch.push({ index, data: chunk });
      batchBytes += chunk.length;
      if (batchBytes >= CODEC_BATCH_BYTES) {
        this.dispatch(batch, batchBytes);
        batch = [];
        batchBytes = 0;
      }
    }
    if (batch.length) this.dispatch(batch, batchBytes);
    await this.belowInFlightLimit();
  }

  /**
   * Like `write`, for volume bytes [offset, offset + length) that sit at the same offsets in an
   * open file (an image or block device): the codec workers read them straight from the
   * descriptor (worker threads share it), so the data never passes through this thread. The file
   * must stay open and unchanged until commit or abort; `what` names it in errors.
   */
  async writeFromFile(fd: number, offset: number, length: number, what: string): Promise<void> {
    this.ensureOpen();
    const { chunkSize } = this.geometry;
    const end = offset + length;
    this.requireAlignedRange("write", offset, length, Number.isSafeInteger(fd) && fd >= 0);
    const step = Math.max(chunkSize, Math.floor(FILE_SCAN_BATCH_BYTES / chunkSize) * chunkSize);
    for (let off = offset; off < end; off += step) {
      const n = Math.min(step, end - off);
      const first = off / chunkSize;
      const indexes = Array.from({ length: Math.ceil(n / chunkSize) }, (_, k) => first + k);
      this.track(n, (release) =>
        this.store(indexes, this.repo.pool.scan(fd, off, n, chunkSize, what), release),
      );
    }
    await this.belowInFlightLimit();
  }

  /** Refuses a range (and `alsoValid` false) that is not whole chunks within the volume. */
  private requireAlignedRange(what: string, offset: number, length: number, alsoValid = true): void {
    const { chunkSize, volumeSize } = this.geometry;
    const end = offset + length;
    if (
      !alsoValid ||
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset % chunkSize !== 0 ||
      end > volumeSize ||
      (length % chunkSize !== 0 && end !== volumeSize)
    ) {
      throw new BulwarkError(
        "BULWARK_REPO_INVALID_ARGUMENT",
        `${what} at ${offset} of ${length} bytes is not chunk-aligned within the ${volumeSize}-byte volume`,
      );
    }
  }

  /**
   * Volume bytes [offset, offset + length) are zero (a hole of the image), with the alignment
   * `write` requires: their chunks become zero markers, as a write of zeros would make them,
   * without the bytes being read or compared.
   */
  zero(offset: number, length: number): void {
    this.ensureOpen();
    const { chunkSize } = this.geometry;
    const end = offset + length;
    this.requireAlignedRange("zero range", offset, length);
    for (let i = offset / chunkSize; i * chunkSize < end; i++) this.setEntry(i, ZERO_ID);
  }

  private async belowInFlightLimit(): Promise<void> {
    while (this.inFlight > INGEST_MAX_IN_FLIGHT_BYTES && !this.failure) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.failure) throw this.failure;
  }

  /** Sets chunk i to an existing chunk (or zero, with null). CHUNK_MISSING if the repository lacks it. */
  async reference(index: number, id: ChunkId | null): Promise<void> {
    this.ensureOpen();
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.geometry.chunkCount) {
      throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", `chunk index ${index} is outside the volume`);
    }
    if (id === null || isZeroId(id)) {
      this.setEntry(index, ZERO_ID);
      return;
    }
    if (id.length !== ID_BYTES)
      throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", "a chunk ID has 32 bytes");
    const hex = idToHex(id);
    const pending = this.known.get(hex);
    if (pending) await pending;
    else if (!(await claimChunk(this.repo.backend, id))) {
      throw new BulwarkError("BULWARK_REPO_CHUNK_MISSING", `chunk ${hex} is not in the repository`, {
        details: { id: hex },
      });
    } else this.known.set(hex, Promise.resolve());
    this.setEntry(index, Buffer.from(id));
  }

  private dispatch(batch: { index: number; data: Uint8Array }[], bytes: number): void {
    const ticketP = this.repo.pool.hash(batch.map((b) => b.data)); // copies synchronously
    // Only the indexes travel on: the caller's buffers must not stay referenced until durable.
    const indexes = batch.map((b) => b.index);
    this.track(bytes, (release) => this.store(indexes, ticketP, release));
  }

  /** Runs one batch's store task, counting its bytes in flight until it releases them. */
  private track(bytes: number, run: (release: () => void) => Promise<void>): void {
    this.inFlight += bytes;
    let released = false;
    // The batch's memory is free once its blobs are staged, long before they are durable.
    const release = () => {
      if (released) return;
      released = true;
      this.inFlight -= bytes;
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    };
    const task = run(release)
      .catch((err) => {
        this.failure ??= err;
      })
      .finally(() => {
        this.tasks.delete(task);
        release();
      });
    this.tasks.add(task);
  }

  private async store(indexes: number[], ticketP: Promise<HashTicket>, release: () => void): Promise<void> {
    const ticket = await ticketP;
    const hexes = ticket.ids.map(idToHex);
    const fresh: number[] = [];
    const seenHere = new Map<string, number>();
    for (let i = 0; i < indexes.length; i++) {
      if (isZeroId(ticket.ids[i]!)) continue; // a zero chunk found by `scan`: never stored
      if (this.known.has(hexes[i]!) || seenHere.has(hexes[i]!)) continue;
      seenHere.set(hexes[i]!, i);
      fresh.push(i);
    }
    const exists = await this.repo.chunkIndex.has(fresh.map((i) => ticket.ids[i]!));
    const claimed = await Promise.all(
      fresh.map((i, k) => (exists[k] ? claimChunk(this.repo.backend, ticket.ids[i]!) : false)),
    );
    const toEncode = fresh.filter((_, k) => !claimed[k]);
    const staging = this.stage(ticket, toEncode);
    let settle!: (err?: unknown) => void;
    const durable = new Promise<void>((resolve, reject) => {
      settle = (err) => (err ? reject(err) : resolve());
    });
    durable.catch(() => {}); // observed through this.failure
    for (const i of fresh) this.known.set(hexes[i]!, durable);
    try {
      const { sizes, puts } = await staging;
      release();
      const created = await Promise.all(puts.map((p) => p.done));
      created.forEach((c, k) => {
        if (c) {
          this.stats.newChunks++;
          this.stats.newStoredBytes += sizes[k]!;
        }
      });
      await this.repo.chunkIndex.added(toEncode.map((i) => ticket.ids[i]!));
      settle();
    } catch (err) {
      settle(err);
      throw err;
    }
    // Chunks named twice (in this batch or another) are set once their first write is durable.
    await Promise.all(hexes.map((h) => this.known.get(h)));
    for (let i = 0; i < indexes.length; i++) this.setEntry(indexes[i]!, ticket.ids[i]!);
  }

  /**
   * Encodes and stages the chunks at positions toEncode; their bytes are not referenced once this
   * resolves. On the local backend the codec workers write the temp files themselves.
   */
  private async stage(ticket: HashTicket, toEncode: number[]) {
    const b = this.repo.backend;
    if (b instanceof LocalBackend) {
      const keys = toEncode.map((i) => chunkKey(ticket.ids[i]!));
      const tmps = keys.map((k) => b.tempPathFor(k));
      const sizes = await this.repo.pool.encodeToFiles(ticket, toEncode, tmps);
      const puts = await Promise.all(
        sizes.map((n, k) => this.writer.adopt(b.adoptStaged(keys[k]!, tmps[k]!, n))),
      );
      return { sizes, puts };
    }
    const blobs = await this.repo.pool.encode(ticket, toEncode);
    const sizes = blobs.map((b) => b.length);
    const puts = await Promise.all(
      blobs.map((blob, k) => this.writer.put(chunkKey(ticket.ids[toEncode[k]!]!), blob)),
    );
    return { sizes, puts };
  }

  private setEntry(index: number, id: Buffer): void {
    const g = this.geometry;
    const leafIndex = Math.floor(index / g.fanout);
    let leaf = this.dirty.get(leafIndex);
    if (!leaf) {
      const n = entryCount(g, 0, leafIndex);
      const done = this.finished.get(leafIndex);
      const fallback = done
        ? done.then((id) => (isZeroId(id) ? Buffer.alloc(n * ID_BYTES) : this.repo.readNode(id, 0, n)))
        : null;
      fallback?.catch(() => {}); // awaited at commit
      leaf = { entries: Buffer.alloc(n * ID_BYTES), set: new Uint8Array(n), count: 0, fallback };
      this.finished.delete(leafIndex);
      this.dirty.set(leafIndex, leaf);
    }
    const slot = index % g.fanout;
    if (isZeroId(id)) this.stats.zeroChunks++;
    if (!leaf.set[slot]) {
      leaf.set[slot] = 1;
      leaf.count++;
    }
    id.copy(leaf.entries, slot * ID_BYTES);
    // A completely written leaf is stored now, keeping memory to the leaves still being filled.
    if (leaf.count === leaf.set.length) {
      this.dirty.delete(leafIndex);
      this.finished.set(leafIndex, this.storeLeaf(leaf.entries));
    }
  }

  private storeLeaf(entries: Buffer): Promise<Buffer> {
    const p = (async () => {
      if (isAllZero(entries)) return ZERO_ID;
      const r = await this.writeNode(0, entries);
      if (r.created) this.stats.newStoredBytes += r.bytes;
      return r.id;
    })();
    p.catch((err) => {
      this.failure ??= err;
    });
    return p;
  }

  /** Makes the restore point exist: waits for every chunk, writes the index, then the record. */
  async commit(): Promise<RestorePoint> {
    this.ensureOpen();
    this.state = "committing";
    try {
      this.writer.drain(); // from here on every staged object is published without waiting
      while (this.tasks.size) await Promise.all(this.tasks);
      if (this.failure) throw this.failure;
      const g = this.geometry;
      // Leaves written partly: fill the rest from the earlier version of the leaf, the base, or zero.
      for (const [leafIndex, leaf] of this.dirty) {
        const fill = leaf.fallback
          ? await leaf.fallback
          : this.baseTree
            ? await this.baseTree.entries(0, leafIndex)
            : null;
        if (fill) {
          for (let s = 0; s < leaf.set.length; s++) {
            if (!leaf.set[s]) fill.copy(leaf.entries, s * ID_BYTES, s * ID_BYTES, (s + 1) * ID_BYTES);
          }
        }
        this.finished.set(leafIndex, this.storeLeaf(leaf.entries));
      }
      this.dirty.clear();
      const touched = [...this.finished.keys()].sort((a, b) => a - b);
      const root = g.chunkCount === 0 ? ZERO_ID : await this.build(g.rootLevel, 0, touched);
      if (this.failure) throw this.failure;
      const point: RestorePoint = {
        format: "bulwark-restore-point",
        version: 1,
        id: newRecordId(),
        name: this.opts.name,
        createdAt: new Date(this.repo.clock.now()).toISOString(),
        volumeSize: g.volumeSize,
        chunkSize: g.chunkSize,
        fanout: g.fanout,
        root: idToHex(root),
        rootLevel: g.rootLevel,
        base: this.base?.id ?? null,
        stats: { chunks: g.chunkCount, ...this.stats },
        labels: { ...(this.opts.labels ?? {}) },
      };
      await this.repo.writeRecord(BlobKind.RestorePoint, `points/${point.id}`, point.id, point);
      this.state = "closed";
      await this.removeRecord().catch(() => {}); // a leftover record only delays GC until it is stale
      return point;
    } catch (err) {
      this.failure ??= err;
      await this.abort();
      throw err;
    }
  }

  /** ID of node (level, index) of the new tree; subtrees without writes come from the base. */
  private async build(level: number, index: number, touched: number[]): Promise<Buffer> {
    const g = this.geometry;
    const leavesPerNode = span(g, level) / g.fanout;
    const first = index * leavesPerNode;
    if (!hasInRange(touched, first, first + leavesPerNode)) {
      return this.baseTree ? this.baseTree.nodeId(level, index) : ZERO_ID;
    }
    if (level === 0) return this.finished.get(index)!;
    const n = entryCount(g, level, index);
    const children = await Promise.all(
      Array.from({ length: n }, (_, j) => this.build(level - 1, index * g.fanout + j, touched)),
    );
    const entries = Buffer.concat(children);
    if (isAllZero(entries)) return ZERO_ID;
    const r = await this.writeNode(level, entries);
    if (r.created) this.stats.newStoredBytes += r.bytes;
    return r.id;
  }

  /** An index node through the session's batched writer: durable when this resolves. */
  private writeNode(level: number, entries: Buffer) {
    return this.repo.writeNode(level, entries, async (key, blob) => (await this.writer.put(key, blob)).done);
  }

  /** Abandons the session: no restore point; stored chunks stay for dedup until GC. */
  async abort(): Promise<void> {
    if (this.state === "closed") return;
    this.state = "closed";
    const closing = this.writer.close(); // staged, unpublished chunks are dropped
    await Promise.allSettled([...this.tasks]);
    await closing.catch(() => {});
    await this.removeRecord().catch(() => {});
  }
}

function hasInRange(sorted: number[], from: number, to: number): boolean {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < from) lo = mid + 1;
    else hi = mid;
  }
  return lo < sorted.length && sorted[lo]! < to;
}
