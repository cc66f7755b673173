import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import { siblingModule, spawnModuleWorker } from "@bulwark/repository";
import { agentError } from "../errors.js";
import type { BatchPart, EncodedBatch } from "./batch-codec.js";
import { UPLOAD_ZSTD_LEVEL } from "./chunk-codec.js";
import type { ChunkWorkerData, ChunkWorkerRequest, ChunkWorkerResponse } from "./worker-messages.js";

/**
 * One worker per core but the main thread's, at most two. A worker hashes (keyed SHA-256, ~1.3 GB/s
 * with SHA-NI) and compresses (zstd level 1) far faster than a server stores what it sends: on the
 * 2-core bench machine one worker served the 1 GiB full backup at the same wall time as two, and
 * every worker costs ~10 MB of RSS (its isolate, malloc arena and batches), so one per core made
 * the agent's memory grow with the machine (8 cores: 8 workers) against a fixed 200 MB target.
 * `--threads N` overrides it.
 */
export function defaultChunkThreads(): number {
  return Math.max(1, Math.min(2, availableParallelism() - 1));
}

/** A group's plaintext (the whole transferred buffer) and, per chunk, its ID (null = all zero). */
export interface HashedGroup {
  buffer: Buffer;
  ids: (Buffer | null)[];
}

interface Slot {
  worker: Worker;
  outstanding: number;
}

interface Pending {
  slot: Slot;
  resolve: (r: ChunkWorkerResponse) => void;
  reject: (e: Error) => void;
}

/**
 * Worker threads that hash chunk groups and compress and serialize upload batches
 * (`defaultChunkThreads()` by default), so hashing and zstd run beside the main thread, which reads
 * and drives TLS and gRPC.
 * Buffers are transferred, never copied: a group's buffer goes to a worker and comes back with the
 * answer, and each batch comes back in a buffer of its own.
 */
export class ChunkWorkerPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextJob = 1;
  private closed = false;

  constructor(idKey: Buffer, opts: { threads?: number; zstdLevel?: number } = {}) {
    const threads = Math.max(1, opts.threads ?? defaultChunkThreads());
    const data: ChunkWorkerData = {
      idKey: Uint8Array.from(idKey),
      zstdLevel: opts.zstdLevel ?? UPLOAD_ZSTD_LEVEL,
    };
    for (let i = 0; i < threads; i++) {
      const slot: Slot = { worker: spawnWorker(data), outstanding: 0 };
      // Idle workers must not keep the process alive; a busy one is ref'd while it has work.
      slot.worker.unref();
      slot.worker.on("message", (res: ChunkWorkerResponse) => this.settle(slot, res));
      slot.worker.on("error", (err) => this.failSlot(slot, err));
      slot.worker.on("exit", (code) => {
        if (!this.closed) this.failSlot(slot, new Error(`chunk worker exited with code ${code}`));
      });
      this.slots.push(slot);
    }
  }

  get threads(): number {
    return this.slots.length;
  }

  /**
   * Hashes consecutive chunks of the given lengths laid out from the start of `buffer`. The whole
   * underlying buffer is transferred and comes back as `HashedGroup.buffer` (full size).
   */
  async hash(buffer: Buffer, lengths: number[]): Promise<HashedGroup> {
    const ab = ownArrayBuffer(buffer);
    const res = await this.send({ op: "hash", job: this.nextJob++, buffer: ab, lengths });
    return {
      buffer: Buffer.from(res.buffer),
      ids: (res.ids ?? []).map((id) => (id ? Buffer.from(id.buffer, id.byteOffset, id.byteLength) : null)),
    };
  }

  /**
   * Compresses the chunks `parts` of `buffer` and serializes them as upload batches of at most
   * `batchBytes` of payload, each with `room` bytes free for its header (see batch-codec.ts).
   * Resolves with the buffer (transferred back; the caller must use this one, the argument is
   * detached) and the batches.
   */
  async encodeBatches(
    buffer: Buffer,
    parts: BatchPart[],
    batchBytes: number,
    room: number,
  ): Promise<{ buffer: Buffer; batches: EncodedBatch[] }> {
    const ab = ownArrayBuffer(buffer);
    const res = await this.send({
      op: "batches",
      job: this.nextJob++,
      buffer: ab,
      parts,
      batchBytes,
      room,
    });
    return { buffer: Buffer.from(res.buffer), batches: res.batches ?? [] };
  }

  private send(req: ChunkWorkerRequest): Promise<ChunkWorkerResponse> {
    if (this.closed)
      return Promise.reject(agentError("BULWARK_GENERAL_INTERNAL", "chunk worker pool is closed"));
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.outstanding < slot.outstanding) slot = s;
    return new Promise((resolve, reject) => {
      this.pending.set(req.job, { slot, resolve, reject });
      if (slot.outstanding++ === 0) slot.worker.ref();
      slot.worker.postMessage(req, [req.buffer]);
    });
  }

  private settle(slot: Slot, res: ChunkWorkerResponse): void {
    const p = this.pending.get(res.job);
    if (!p) return;
    this.pending.delete(res.job);
    if (--slot.outstanding === 0) slot.worker.unref();
    if (res.error) p.reject(agentError("BULWARK_GENERAL_INTERNAL", `chunk worker: ${res.error}`));
    else p.resolve(res);
  }

  private failSlot(slot: Slot, err: Error): void {
    for (const [job, p] of this.pending) {
      if (p.slot !== slot) continue;
      this.pending.delete(job);
      p.reject(agentError("BULWARK_GENERAL_INTERNAL", `chunk worker failed: ${err.message}`, undefined, err));
    }
    slot.outstanding = 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [job, p] of this.pending) {
      this.pending.delete(job);
      p.reject(agentError("BULWARK_GENERAL_INTERNAL", "chunk worker pool closed"));
    }
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

/**
 * The ArrayBuffer to transfer: the buffer's own when it spans all of it (pipeline buffers do), so
 * it travels without a copy; otherwise a copy, never a shared allocation other buffers live in.
 */
function ownArrayBuffer(buffer: Buffer): ArrayBuffer {
  if (
    buffer.byteOffset === 0 &&
    buffer.buffer instanceof ArrayBuffer &&
    buffer.buffer.byteLength === buffer.length
  ) {
    return buffer.buffer;
  }
  const copy = new ArrayBuffer(buffer.length);
  new Uint8Array(copy).set(buffer);
  return copy;
}

function spawnWorker(data: ChunkWorkerData): Worker {
  return spawnModuleWorker(siblingModule(import.meta.url, "chunk-worker"), { workerData: data });
}
