import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import { BulwarkError } from "@bulwark/errors";
import type { BlobKind } from "./blob.js";
import type { CodecRequest, CodecResponse, WorkerKeys } from "./codec-protocol.js";
import { DEFAULT_ZSTD_LEVEL } from "./constants.js";
import type { MasterKey } from "./keys.js";
import { siblingModule, spawnModuleWorker } from "./spawn-worker.js";
import { fromWorkerError } from "./worker-error.js";

/**
 * Worker threads that hash, compress+encrypt and decrypt+verify chunks, so ingest and restore use
 * every core while the main thread does I/O. Any number of calls may be outstanding at once; each
 * hashed batch stays in its worker until `encode` names it (with no positions to drop it).
 */
export interface HashTicket {
  worker: number;
  job: number;
  ids: Buffer[];
}

interface Slot {
  worker: Worker;
  outstanding: number;
}

export class CodecPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<
    number,
    { slot: Slot; resolve: (r: CodecResponse) => void; reject: (e: Error) => void }
  >();
  private nextJob = 1;
  private closed = false;
  private readonly level: number;
  private unlocked = false;

  /**
   * With `keys: null` the threads start now and wait for `unlock`: `bulwark-repo put` starts them
   * before it derives the key (scrypt), so their start-up (an isolate and the codec modules
   * each) overlaps it, as the restore pool's does.
   */
  constructor(keys: MasterKey | null, opts: { threads?: number; level?: number } = {}) {
    const threads = Math.max(1, opts.threads ?? availableParallelism());
    this.level = opts.level ?? DEFAULT_ZSTD_LEVEL;
    const data = keys ? this.workerKeys(keys) : null;
    this.unlocked = data !== null;
    for (let i = 0; i < threads; i++) {
      const worker = spawnWorker(data);
      const slot: Slot = { worker, outstanding: 0 };
      worker.unref();
      worker.on("message", (res: CodecResponse) => this.settle(slot, res));
      worker.on("error", (err) => this.failSlot(slot, err));
      worker.on("exit", (code) => {
        if (!this.closed) this.failSlot(slot, new Error(`codec worker exited with code ${code}`));
      });
      this.slots.push(slot);
    }
  }

  get threads(): number {
    return this.slots.length;
  }

  private workerKeys(keys: MasterKey): WorkerKeys {
    return { idKey: keys.idKey, nodeIdKey: keys.nodeIdKey, dataKey: keys.dataKey, level: this.level };
  }

  /** Gives threads started without keys the ID, node-ID and data keys (once; later calls are ignored). */
  unlock(keys: MasterKey): void {
    if (this.unlocked) return;
    this.unlocked = true;
    const data = this.workerKeys(keys);
    for (const s of this.slots)
      s.worker.postMessage({ op: "keys", job: 0, keys: data } satisfies CodecRequest);
  }

  private settle(slot: Slot, res: CodecResponse): void {
    const p = this.pending.get(res.job);
    if (!p) return;
    this.pending.delete(res.job);
    if (--slot.outstanding === 0) slot.worker.unref();
    if (res.error) p.reject(fromWorkerError(res.error, "codec worker"));
    else p.resolve(res);
  }

  private failSlot(slot: Slot, err: Error): void {
    for (const [job, p] of this.pending) {
      if (p.slot !== slot) continue;
      this.pending.delete(job);
      p.reject(
        new BulwarkError("BULWARK_GENERAL_INTERNAL", `codec worker failed: ${err.message}`, { cause: err }),
      );
    }
    slot.outstanding = 0;
  }

  private send(slot: Slot, req: CodecRequest, transfer: ArrayBuffer[] = []): Promise<CodecResponse> {
    if (this.closed)
      return Promise.reject(new BulwarkError("BULWARK_GENERAL_INTERNAL", "codec pool is closed"));
    if (!this.unlocked)
      return Promise.reject(new BulwarkError("BULWARK_GENERAL_INTERNAL", "codec pool has no keys"));
    return new Promise((resolve, reject) => {
      this.pending.set(req.job, { slot, resolve, reject });
      if (slot.outstanding++ === 0) slot.worker.ref();
      slot.worker.postMessage(req, transfer);
    });
  }

  private leastBusy(): number {
    let best = 0;
    for (let i = 1; i < this.slots.length; i++) {
      if (this.slots[i]!.outstanding < this.slots[best]!.outstanding) best = i;
    }
    return best;
  }

  /** Hashes chunks (copied into one transferred buffer); they stay in the worker for `encode`. */
  async hash(chunks: Uint8Array[]): Promise<HashTicket> {
    const { buffer, parts } = packInto(chunks);
    const worker = this.leastBusy();
    const job = this.nextJob++;
    const res = await this.send(this.slots[worker]!, { op: "hash", job, chunks: parts }, [buffer]);
    return { worker, job, ids: res.ids!.map((id) => Buffer.from(id.buffer, id.byteOffset, id.byteLength)) };
  }

  /**
   * Checks and hashes uploaded payloads in a worker (nothing is decompressed on this thread): each
   * is its chunk's bytes or, with `zstd`, a zstd frame that must give exactly plainSize bytes. A
   * frame smaller than its chunk becomes the stored payload as is (no second compression), and
   * the other chunks are stored uncompressed: the sender found they do not shrink. The
   * payloads are copied into one transferred buffer, so the caller's may be dropped; or, with
   * `handOver`, a buffer that holds every payload and that nobody else refers to is transferred
   * without a copy (the caller's views of it become empty). Resolves to the ticket for `encode`,
   * or to the first payload that is not its chunk (nothing held then).
   */
  async unpack(
    items: { payload: Uint8Array; plainSize: number; zstd: boolean }[],
    handOver?: ArrayBuffer,
  ): Promise<HashTicket | { invalid: { position: number; message: string } }> {
    const { buffer, parts } =
      handOver && handOver.byteLength > 0 && items.every((i) => i.payload.buffer === handOver)
        ? {
            buffer: handOver,
            parts: items.map((i) => ({
              buffer: handOver,
              offset: i.payload.byteOffset,
              length: i.payload.byteLength,
            })),
          }
        : packInto(items.map((i) => i.payload));
    const worker = this.leastBusy();
    const job = this.nextJob++;
    const res = await this.send(
      this.slots[worker]!,
      {
        op: "unpack",
        job,
        buffer,
        items: parts.map((p, k) => ({
          offset: p.offset,
          length: p.length,
          plainSize: items[k]!.plainSize,
          zstd: items[k]!.zstd,
        })),
      },
      [buffer],
    );
    if (res.invalid) return { invalid: res.invalid };
    return { worker, job, ids: res.ids!.map((id) => Buffer.from(id.buffer, id.byteOffset, id.byteLength)) };
  }

  /**
   * Reads [offset, offset + length) of an open file in a worker (threads share the descriptor
   * table), cut into chunks of chunkSize; hashes the non-zero ones. The chunks stay in the worker
   * for `encode`; all-zero chunks get the zero ID. Nothing of the data passes the main thread.
   */
  async scan(
    fd: number,
    offset: number,
    length: number,
    chunkSize: number,
    what: string,
  ): Promise<HashTicket> {
    const worker = this.leastBusy();
    const job = this.nextJob++;
    const res = await this.send(this.slots[worker]!, {
      op: "scan",
      job,
      fd,
      offset,
      length,
      chunkSize,
      what,
    });
    const flat = Buffer.from(res.flatIds!.buffer, res.flatIds!.byteOffset, res.flatIds!.byteLength);
    const ids: Buffer[] = [];
    for (let off = 0; off < flat.length; off += 32) ids.push(flat.subarray(off, off + 32));
    return { worker, job, ids };
  }

  /** Encodes the chunks of a hashed batch at the given positions; releases the batch. */
  async encode(ticket: HashTicket, which: number[]): Promise<Buffer[]> {
    const job = this.nextJob++;
    const res = await this.send(this.slots[ticket.worker]!, {
      op: "encode",
      job,
      batch: ticket.job,
      ids: ticket.ids.map(exact),
      which,
    });
    return res.blobs!.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  }

  /**
   * Encodes the chunks of a hashed batch at the given positions straight into new files (one per
   * position, created exclusively, not fsynced); returns the blob sizes; releases the batch.
   */
  async encodeToFiles(ticket: HashTicket, which: number[], files: string[]): Promise<number[]> {
    const job = this.nextJob++;
    const res = await this.send(this.slots[ticket.worker]!, {
      op: "encode",
      job,
      batch: ticket.job,
      ids: ticket.ids.map(exact),
      which,
      files,
    });
    return res.sizes!;
  }

  /**
   * Restores chunks into an open file descriptor (shared by the workers): takes each blob,
   * authenticates, decompresses, re-checks the ID and length, and writes the
   * plaintext at its offset. Resolves when every item is written.
   */
  async restoreInto(
    fd: number,
    items: { id: Buffer; blob: Buffer; what: string; offset: number; length: number }[],
  ): Promise<void> {
    const job = this.nextJob++;
    await this.send(this.slots[this.leastBusy()]!, { op: "restore", job, fd, items });
  }

  /** Decrypts, decompresses and re-checks the IDs of blobs. */
  async decode(items: { kind: BlobKind; id: Buffer; blob: Buffer; what: string }[]): Promise<Buffer[]> {
    const job = this.nextJob++;
    const res = await this.send(this.slots[this.leastBusy()]!, { op: "decode", job, items });
    return res.plains!.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [job, p] of this.pending) {
      this.pending.delete(job);
      p.reject(new BulwarkError("BULWARK_GENERAL_INTERNAL", "codec pool closed"));
    }
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

/** Copies byte arrays into one new (transferable) buffer, back to back. */
function packInto(items: Uint8Array[]): {
  buffer: ArrayBuffer;
  parts: { buffer: ArrayBuffer; offset: number; length: number }[];
} {
  const total = items.reduce((n, c) => n + c.length, 0);
  // Uninitialised: every byte is overwritten below (a zero-filled buffer costs a memset).
  const buffer = Buffer.allocUnsafeSlow(total).buffer as ArrayBuffer;
  const view = new Uint8Array(buffer);
  let off = 0;
  const parts = items.map((c) => {
    view.set(c, off);
    const part = { buffer, offset: off, length: c.length };
    off += c.length;
    return part;
  });
  return { buffer, parts };
}

/**
 * A copy of an ID over its own 32-byte ArrayBuffer: structured cloning a view clones its whole
 * backing store (for pooled Buffers, 8 KiB per ID).
 */
export function exact(id: Uint8Array): Uint8Array {
  return new Uint8Array(id);
}

/** The codec worker: compiled or, from TypeScript sources, through tsx (spawn-worker.ts). */
function spawnWorker(data: WorkerKeys | null): Worker {
  return spawnModuleWorker(siblingModule(import.meta.url, "codec-worker"), { workerData: data });
}
