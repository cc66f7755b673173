import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import { BulwarkError } from "@bulwark/errors";
import type { MasterKey } from "./keys.js";
import { siblingModule, spawnModuleWorker } from "./spawn-worker.js";
import { fromWorkerError, type WorkerError } from "./worker-error.js";

/** Messages between the restore pool and its workers (restore-worker.ts). */
export type RestoreRequest =
  | { op: "keys"; idKey: Uint8Array; dataKey: Uint8Array }
  | {
      op: "restore";
      job: number;
      /** Output file descriptor (worker threads share the process's descriptor table). */
      fd: number;
      /** The local backend's chunk directory: a chunk is `<chunkDir>/<2 hex>/<64 hex>`. */
      chunkDir: string;
      /** Index of the first chunk; `ids` holds the IDs of consecutive chunks (zero ID: a hole). */
      first: number;
      ids: Uint8Array;
      chunkSize: number;
      volumeSize: number;
    };

export interface RestoreResponse {
  job: number;
  error?: WorkerError;
}

interface Slot {
  worker: Worker;
  outstanding: number;
}

/**
 * Worker threads that restore runs of chunks from a local repository into an open file
 * (PointReader.writeInto). They start at construction, before the keys are known, so that loading
 * their modules overlaps the key derivation (scrypt) of `Repository.open`; `unlock` hands them the
 * keys. Requests sent before `unlock` wait in the workers' message queues.
 */
export class RestorePool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<
    number,
    { slot: Slot; resolve: () => void; reject: (e: Error) => void }
  >();
  private nextJob = 1;
  private closed = false;
  private unlocked = false;

  constructor(opts: { threads?: number } = {}) {
    const threads = Math.max(1, opts.threads ?? availableParallelism());
    for (let i = 0; i < threads; i++) {
      const worker = spawnWorker();
      const slot: Slot = { worker, outstanding: 0 };
      worker.unref();
      worker.on("message", (res: RestoreResponse) => this.settle(slot, res));
      worker.on("error", (err) => this.failSlot(slot, err));
      worker.on("exit", (code) => {
        if (!this.closed) this.failSlot(slot, new Error(`restore worker exited with code ${code}`));
      });
      this.slots.push(slot);
    }
  }

  get threads(): number {
    return this.slots.length;
  }

  /** Gives the workers the ID and data keys (once; later calls are ignored). */
  unlock(keys: MasterKey): void {
    if (this.unlocked) return;
    this.unlocked = true;
    for (const s of this.slots) {
      s.worker.postMessage({
        op: "keys",
        idKey: new Uint8Array(keys.idKey),
        dataKey: new Uint8Array(keys.dataKey),
      } satisfies RestoreRequest);
    }
  }

  private settle(slot: Slot, res: RestoreResponse): void {
    const p = this.pending.get(res.job);
    if (!p) return;
    this.pending.delete(res.job);
    if (--slot.outstanding === 0) slot.worker.unref();
    if (!res.error) {
      p.resolve();
      return;
    }
    p.reject(fromWorkerError(res.error, "restore worker"));
  }

  private failSlot(slot: Slot, err: Error): void {
    for (const [job, p] of this.pending) {
      if (p.slot !== slot) continue;
      this.pending.delete(job);
      p.reject(
        new BulwarkError("BULWARK_GENERAL_INTERNAL", `restore worker failed: ${err.message}`, { cause: err }),
      );
    }
    slot.outstanding = 0;
  }

  /**
   * Restores consecutive chunks `first`, `first + 1`, … (their IDs in `ids`, 32 bytes each; the
   * buffer is transferred) into `fd` at their offsets; zero IDs are left as holes. Resolves when
   * every chunk passed authentication and its ID check and was written.
   */
  restore(req: Omit<Extract<RestoreRequest, { op: "restore" }>, "op" | "job">): Promise<void> {
    if (this.closed)
      return Promise.reject(new BulwarkError("BULWARK_GENERAL_INTERNAL", "restore pool is closed"));
    if (!this.unlocked)
      return Promise.reject(new BulwarkError("BULWARK_GENERAL_INTERNAL", "restore pool has no keys"));
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.outstanding < slot.outstanding) slot = s;
    const job = this.nextJob++;
    return new Promise((resolve, reject) => {
      this.pending.set(job, { slot, resolve, reject });
      if (slot.outstanding++ === 0) slot.worker.ref();
      const msg: RestoreRequest = { op: "restore", job, ...req };
      slot.worker.postMessage(msg, [req.ids.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [job, p] of this.pending) {
      this.pending.delete(job);
      p.reject(new BulwarkError("BULWARK_GENERAL_INTERNAL", "restore pool closed"));
    }
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

/** The restore worker: compiled or, from TypeScript sources, through tsx (spawn-worker.ts). */
function spawnWorker(): Worker {
  return spawnModuleWorker(siblingModule(import.meta.url, "restore-worker"));
}
