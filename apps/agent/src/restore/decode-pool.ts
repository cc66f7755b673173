import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import { takeTransferable } from "@bulwark/protocol";
import { siblingModule, spawnModuleWorker } from "@bulwark/repository";
import { agentError } from "../errors.js";
import type { DecodeRequest, DecodeResponse, DecodeWorkerData } from "./decode-messages.js";

/** Per chunk: its plaintext (a view into a worker's output buffer) and its ID (null = all zero). */
export interface DecodedGroup {
  chunks: Buffer[];
  ids: (Buffer | null)[];
  /** The workers' output buffers behind `chunks`: DecodePool.recycle takes them once written. */
  buffers: ArrayBuffer[];
}

/** One received chunk to decode: its wire encoding, payload and the length the agent expects. */
export interface DecodeItem {
  encoding: number;
  payload: Uint8Array;
  length: number;
}

/** A chunk the workers could not decode to its length: `position` in the decode call's items. */
export class UndecodableChunk extends Error {
  constructor(
    readonly position: number,
    message: string,
  ) {
    super(message);
  }
}

interface Slot {
  worker: Worker;
  outstanding: number;
}

interface Pending {
  slot: Slot;
  resolve: (r: DecodeResponse) => void;
  reject: (e: Error) => void;
}

/**
 * The restore's worker threads (one per core by default): decompress and hash received chunks,
 * read and hash the target's chunks for delta have runs, read the target for a full restore's
 * zero check. A message's chunks are split over the workers so
 * both cores work on it, and several messages may be in flight (the caller reads ahead).
 */
/** Output buffers handed back by recycle() and not yet sent to a worker; at most this many are kept. */
const MAX_SPARE = 16;
/** Spare buffers sent along with each decode request (it uses one). */
const SPARE_PER_REQUEST = 2;

export class DecodePool {
  private readonly slots: Slot[] = [];
  private readonly spare: ArrayBuffer[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextJob = 1;
  private closed = false;

  constructor(idKey: Buffer, opts: { threads?: number } = {}) {
    const threads = Math.max(1, opts.threads ?? availableParallelism());
    const data: DecodeWorkerData = { idKey: Uint8Array.from(idKey) };
    for (let i = 0; i < threads; i++) {
      const slot: Slot = { worker: spawnWorker(data), outstanding: 0 };
      slot.worker.unref(); // idle workers must not keep the process alive
      slot.worker.on("message", (res: DecodeResponse) => this.settle(slot, res));
      slot.worker.on("error", (err) => this.failSlot(slot, err));
      slot.worker.on("exit", (code) => {
        if (!this.closed) this.failSlot(slot, new Error(`restore worker exited with code ${code}`));
      });
      this.slots.push(slot);
    }
  }

  /**
   * Reads consecutive chunks of `lengths` at `offset` of the open target `fd` on a worker and
   * returns each one's keyed hash, or null for an all-zero chunk (a delta restore's have runs).
   * With `reads` (absolute byte ranges), only those are read; the rest counts as zeros.
   */
  async hashTarget(
    fd: number,
    offset: number,
    lengths: number[],
    reads?: [number, number][],
  ): Promise<(Buffer | null)[]> {
    const res = await this.send(
      { op: "scan", job: this.nextJob++, fd, offset, lengths, hash: true, ...(reads ? { reads } : {}) },
      [],
    );
    return idsOf(res);
  }

  /** Like hashTarget, without hashing: per chunk, true when it reads as all zeros. */
  async zeroTarget(fd: number, offset: number, lengths: number[]): Promise<boolean[]> {
    const res = await this.send({ op: "scan", job: this.nextJob++, fd, offset, lengths, hash: false }, []);
    return (res.ids ?? []).map((id) => id === null);
  }

  /**
   * Decodes every item into exactly its length and hashes it, spread over the workers. Throws
   * UndecodableChunk (with the item's position) when a payload does not decode to its length.
   */
  async decode(items: DecodeItem[]): Promise<DecodedGroup> {
    // Payloads that are views of one received message the protocol layer let go of: the whole
    // message goes to one worker as it is, no copy here (the caller reads messages ahead, so
    // consecutive messages keep both workers busy). Otherwise the items are split over the
    // workers, each part copied into a buffer of its own.
    const shared = items[0]?.payload.buffer;
    const whole =
      shared !== undefined && items.every((it) => it.payload.buffer === shared) && takeTransferable(shared);
    const parts = whole ? 1 : Math.min(this.slots.length, items.length);
    const per = Math.ceil(items.length / Math.max(1, parts));
    const calls: Promise<DecodeResponse>[] = [];
    for (let p = 0; p * per < items.length; p++) {
      const part = items.slice(p * per, (p + 1) * per);
      const payloadLengths = part.map((it) => it.payload.length);
      let payloads: ArrayBuffer;
      let payloadOffsets: number[];
      if (whole) {
        payloads = shared as ArrayBuffer;
        payloadOffsets = part.map((it) => it.payload.byteOffset);
      } else {
        payloads = new ArrayBuffer(payloadLengths.reduce((n, l) => n + l, 0));
        const view = new Uint8Array(payloads);
        payloadOffsets = [];
        let at = 0;
        for (const it of part) {
          view.set(it.payload, at);
          payloadOffsets.push(at);
          at += it.payload.length;
        }
      }
      const spare = this.spare.splice(0, SPARE_PER_REQUEST);
      const req: DecodeRequest = {
        op: "decode",
        job: this.nextJob++,
        payloads,
        payloadOffsets,
        payloadLengths,
        encodings: part.map((it) => it.encoding),
        lengths: part.map((it) => it.length),
        ...(spare.length > 0 ? { spare } : {}),
      };
      calls.push(this.send(req, [payloads, ...spare]));
    }
    const results = await Promise.all(calls);
    results.forEach((r, p) => {
      if (r.invalid) throw new UndecodableChunk(p * per + r.invalid.position, r.invalid.message);
    });
    // Views into each worker's output: no copy into one buffer (the writes gather them).
    const chunks: Buffer[] = [];
    results.forEach((r, p) => {
      const out = Buffer.from(r.buffer!);
      let at = 0;
      for (const item of items.slice(p * per, (p + 1) * per)) {
        chunks.push(out.subarray(at, at + item.length));
        at += item.length;
      }
    });
    return { chunks, ids: results.flatMap(idsOf), buffers: results.map((r) => r.buffer!) };
  }

  /**
   * Output buffers of a decoded group whose chunks are written and no longer read: the workers
   * decode into them again (every view of them on this thread becomes empty).
   */
  recycle(buffers: ArrayBuffer[]): void {
    for (const b of buffers) {
      if (this.closed || this.spare.length >= MAX_SPARE) return;
      if (b.byteLength > 0 && !this.spare.includes(b)) this.spare.push(b);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new Error("restore worker pool closed"));
    this.pending.clear();
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private send(req: DecodeRequest, transfer: ArrayBuffer[]): Promise<DecodeResponse> {
    if (this.closed) return Promise.reject(new Error("restore worker pool closed"));
    const slot = this.slots.reduce((a, b) => (b.outstanding < a.outstanding ? b : a));
    slot.outstanding++;
    if (slot.outstanding === 1) slot.worker.ref();
    return new Promise<DecodeResponse>((resolve, reject) => {
      this.pending.set(req.job, { slot, resolve, reject });
      slot.worker.postMessage(req, transfer);
    });
  }

  private settle(slot: Slot, res: DecodeResponse): void {
    const p = this.pending.get(res.job);
    if (!p) return;
    this.pending.delete(res.job);
    this.release(slot);
    if (res.error) p.reject(agentError("BULWARK_GENERAL_INTERNAL", `restore worker failed: ${res.error}`));
    else p.resolve(res);
  }

  private release(slot: Slot): void {
    slot.outstanding--;
    if (slot.outstanding === 0) slot.worker.unref();
  }

  private failSlot(slot: Slot, err: Error): void {
    for (const [job, p] of this.pending) {
      if (p.slot !== slot) continue;
      this.pending.delete(job);
      this.release(slot);
      p.reject(agentError("BULWARK_GENERAL_INTERNAL", `restore worker failed: ${err.message}`, {}, err));
    }
  }
}

function idsOf(res: DecodeResponse): (Buffer | null)[] {
  return (res.ids ?? []).map((id) => (id ? Buffer.from(id.buffer, id.byteOffset, id.byteLength) : null));
}

function spawnWorker(data: DecodeWorkerData): Worker {
  return spawnModuleWorker(siblingModule(import.meta.url, "decode-worker"), { workerData: data });
}
