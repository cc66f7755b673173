import { randomBytes } from "node:crypto";
import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import { BulwarkError, type ErrorCode, errorCatalogue } from "@bulwark/errors";
import {
  BlobKind,
  chunkKey,
  DEFAULT_CHUNK_SIZE,
  encodeBlob,
  LocalBackend,
  type Repository,
  siblingModule,
  spawnModuleWorker,
} from "@bulwark/repository";
import type { EncodedChunks, WantedChunk } from "./encode-chunks.js";
import type { ReadItem, ReadRequest, ReadResponse, TrimmedResponse, TrimRequest } from "./read-messages.js";

// The server half of a restore's read-ahead (docs/protocol.md §3, "Answers to a Want"): worker
// threads read stored chunk files, authenticate and decrypt them and encode them as Chunks
// messages, so that the main thread is left with planning ranges and sending messages. One pool
// per process, shared by every restore stream; idle workers do not keep the process alive. A
// repository that is not a local directory is read on the main thread (Repository.getObject) and
// only opened and encoded on a worker. bulwark-server starts and warms the pool with its agent
// listener (warmUp), so that no restore pays for starting threads and compiling the read path; an
// idle pool drops its buffers (IDLE_TRIM_MS).

interface Slot {
  worker: Worker;
  outstanding: number;
}

interface Pending {
  slot: Slot;
  items: ReadItem[];
  resolve: (r: EncodedChunks) => void;
  reject: (e: Error) => void;
}

/** Buffers handed back by recycle() and not yet sent to a worker; at most this many are kept. */
const MAX_SPARE = 16;
/** Spare buffers sent along with each request (a job uses one). */
const SPARE_PER_REQUEST = 2;
/** After this long without a job the spare buffers go, here and in the workers. */
const IDLE_TRIM_MS = 30_000;
/**
 * Warm-up per worker: WARM_JOBS synthetic jobs of WARM_CHUNKS chunks of the default chunk size
 * (raw and zstd) in a throwaway key. Enough calls that V8 optimises the read path, and enough bytes
 * that the thread's malloc arena and V8 heap have grown to a restore's working size: the first
 * restore of a cold pool spent ~0.8 CPU s more per GiB than the next, much of it page faults in
 * fresh memory (decrypted payloads, message buffers).
 */
const WARM_JOBS = 16;
const WARM_CHUNKS = 8;

export class RestoreReadPool {
  private readonly slots: Slot[] = [];
  private readonly spare: ArrayBuffer[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextJob = 1;
  private closed = false;
  private lastJob = 0;
  private trimTimer: NodeJS.Timeout | undefined;

  private readonly idleTrimMs: number;
  /** Buffers workers gave up at idle trims (their scratch and spare message buffers). */
  trimmedBuffers = 0;

  constructor(threads = availableParallelism(), opts: { idleTrimMs?: number } = {}) {
    this.idleTrimMs = opts.idleTrimMs ?? IDLE_TRIM_MS;
    for (let i = 0; i < Math.max(1, threads); i++) {
      const slot: Slot = { worker: spawnWorker(), outstanding: 0 };
      slot.worker.unref();
      slot.worker.on("message", (res: ReadResponse | TrimmedResponse) => this.settle(res));
      slot.worker.on("error", (err) => this.failSlot(slot, err));
      slot.worker.on("exit", (code) => {
        if (!this.closed) this.failSlot(slot, new Error(`restore read worker exited with code ${code}`));
      });
      this.slots.push(slot);
    }
  }

  /** The chunks `wanted` of `repo` as Chunks messages, in order; throws the repository's errors. */
  async read(repo: Repository, wanted: WantedChunk[]): Promise<EncodedChunks> {
    const backend = repo.backend;
    const local = backend instanceof LocalBackend ? backend : undefined;
    const items: ReadItem[] = [];
    const blobs = local
      ? undefined
      : await Promise.all(wanted.map((w) => repo.getObject(chunkKey(w.id), "chunk")));
    wanted.forEach(({ id, indexes }, k) => {
      const what = chunkKey(id);
      items.push(
        local ? { id, indexes, file: local.filePath(what), what } : { id, indexes, blob: blobs![k]!, what },
      );
    });
    return await this.send({ job: this.nextJob++, dataKey: repo.keys.dataKey, items });
  }

  /**
   * Runs WARM_JOBS synthetic jobs through every worker (they started with the pool). Resolves when
   * they are done; a failure there is not an error of any restore, so it resolves all the same and
   * says so (a broken worker is replaced and fails its first real job anyway).
   */
  async warmUp(): Promise<{ ok: boolean }> {
    const dataKey = randomBytes(32);
    const chunk = (k: number) => {
      // Half incompressible (stored raw), half text (stored as a zstd frame): both branches.
      const plain =
        k % 2
          ? randomBytes(DEFAULT_CHUNK_SIZE)
          : Buffer.alloc(DEFAULT_CHUNK_SIZE, `restore read pool warm-up ${k} `);
      const id = randomBytes(32);
      return { id, indexes: [k], blob: encodeBlob(BlobKind.Data, id, plain, dataKey), what: "warm-up" };
    };
    const items: ReadItem[] = Array.from({ length: WARM_CHUNKS }, (_, k) => chunk(k));
    const perSlot = this.slots.map(async () => {
      for (let j = 0; j < WARM_JOBS; j++) {
        const encoded = await this.send({ job: this.nextJob++, dataKey, items });
        encoded.recycle?.();
      }
    });
    const results = await Promise.allSettled(perSlot);
    return { ok: results.every((r) => r.status === "fulfilled") };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.trimTimer);
    for (const p of this.pending.values()) p.reject(new Error("restore read pool closed"));
    this.pending.clear();
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private send(req: ReadRequest): Promise<EncodedChunks> {
    if (this.closed) return Promise.reject(new Error("restore read pool closed"));
    this.lastJob = performance.now();
    const slot = this.slots.reduce((a, b) => (b.outstanding < a.outstanding ? b : a));
    slot.outstanding++;
    if (slot.outstanding === 1) slot.worker.ref();
    const spare = this.spare.splice(0, SPARE_PER_REQUEST);
    if (spare.length > 0) req.spare = spare;
    return new Promise<EncodedChunks>((resolve, reject) => {
      this.pending.set(req.job, { slot, items: req.items, resolve, reject });
      slot.worker.postMessage(req, spare);
    });
  }

  /** A response buffer whose messages grpc-js has taken: a worker may encode into it again. */
  private recycle(buffer: ArrayBuffer): void {
    if (this.closed || buffer.byteLength === 0 || this.spare.length >= MAX_SPARE) return;
    this.spare.push(buffer);
    if (this.pending.size === 0) this.scheduleTrim(this.idleTrimMs);
  }

  private settle(res: ReadResponse | TrimmedResponse): void {
    // A trimmed worker's buffers: dropped here, freed by this thread's next collection.
    if ("trimmed" in res) {
      this.trimmedBuffers += res.trimmed;
      return;
    }
    const p = this.pending.get(res.job);
    if (!p) return;
    this.pending.delete(res.job);
    this.release(p.slot);
    if (res.failure) {
      const f = res.failure;
      const code = (Object.hasOwn(errorCatalogue, f.code) ? f.code : "BULWARK_GENERAL_INTERNAL") as ErrorCode;
      p.reject(new BulwarkError(code, f.message, f.details ? { details: f.details } : {}));
      return;
    }
    const buffer = res.messages!;
    const size = res.lengths!.reduce((n, l) => n + l, 0);
    let recycled = false;
    p.resolve({
      bytes: Buffer.from(buffer, 0, size),
      lengths: res.lengths!,
      payloadBytes: res.payloadBytes!,
      recycle: () => {
        if (recycled) return;
        recycled = true;
        this.recycle(buffer);
      },
    });
  }

  private release(slot: Slot): void {
    slot.outstanding--;
    if (slot.outstanding === 0) slot.worker.unref();
    if (this.pending.size === 0) this.scheduleTrim(this.idleTrimMs);
  }

  /** One timer at a time, re-armed for what is left when jobs came in meanwhile. */
  private scheduleTrim(ms: number): void {
    if (this.trimTimer || this.closed) return;
    this.trimTimer = setTimeout(() => {
      this.trimTimer = undefined;
      if (this.pending.size > 0) return; // the last of those jobs re-arms it
      const idle = performance.now() - this.lastJob;
      if (idle < this.idleTrimMs) return this.scheduleTrim(this.idleTrimMs - idle);
      this.spare.length = 0;
      const trim: TrimRequest = { trim: true };
      for (const s of this.slots) s.worker.postMessage(trim);
    }, ms);
    this.trimTimer.unref();
  }

  private failSlot(slot: Slot, err: Error): void {
    for (const [job, p] of this.pending) {
      if (p.slot !== slot) continue;
      this.pending.delete(job);
      this.release(slot);
      p.reject(
        new BulwarkError("BULWARK_GENERAL_INTERNAL", `restore read worker failed: ${err.message}`, {
          cause: err,
        }),
      );
    }
    // A dead worker is replaced, so one crash does not take every later restore with it.
    const at = this.slots.indexOf(slot);
    if (at >= 0 && !this.closed) {
      slot.worker.removeAllListeners();
      void slot.worker.terminate().catch(() => {});
      const fresh: Slot = { worker: spawnWorker(), outstanding: 0 };
      fresh.worker.unref();
      fresh.worker.on("message", (res: ReadResponse | TrimmedResponse) => this.settle(res));
      fresh.worker.on("error", (e) => this.failSlot(fresh, e));
      fresh.worker.on("exit", (code) => {
        if (!this.closed) this.failSlot(fresh, new Error(`restore read worker exited with code ${code}`));
      });
      this.slots[at] = fresh;
    }
  }
}

let shared: RestoreReadPool | undefined;

/** The process's pool, started on first use (bulwark-server starts it with its agent listener). */
export function restoreReadPool(): RestoreReadPool {
  shared ??= new RestoreReadPool();
  return shared;
}

function spawnWorker(): Worker {
  return spawnModuleWorker(siblingModule(import.meta.url, "read-worker"));
}
