import { BulwarkError } from "@bulwark/errors";
import type { Backend, StagedObject } from "./backend.js";
import { STAGE_FLUSH_AFTER_MS, STAGE_FLUSH_BYTES } from "./constants.js";

/**
 * Batched durability for one ingest session (spec, "Write ordering and crash safety"). `put`
 * resolves as soon as the bytes are staged (hidden, not durable), so the caller can drop its copy;
 * the `done` it returns settles once a barrier has made the object durable and visible under its key
 * (true if this session created it). A barrier runs once STAGE_FLUSH_BYTES are staged, when the
 * oldest staged object is STAGE_FLUSH_AFTER_MS old, or at once while draining (commit). One barrier
 * runs at a time; objects staged meanwhile go into the next. Backends without staging fall back to
 * one durable `putIfAbsent` per object.
 */
export class StagedWriter {
  private batch: {
    staged: StagedObject;
    resolve: (created: boolean) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private batchBytes = 0;
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private draining = false;
  private closed = false;

  constructor(
    private readonly backend: Backend,
    private readonly opts: { flushBytes?: number; flushAfterMs?: number } = {},
  ) {}

  async put(key: string, bytes: Uint8Array): Promise<{ done: Promise<boolean> }> {
    const b = this.backend;
    if (!b.stage || !b.publish) return { done: b.putIfAbsent(key, bytes) };
    if (this.closed) throw closedError();
    return this.adopt(await b.stage(key, bytes));
  }

  /** Queues an object staged elsewhere (the codec workers write temp files themselves). */
  async adopt(staged: StagedObject): Promise<{ done: Promise<boolean> }> {
    if (this.closed) {
      await this.backend.discard?.([staged]);
      throw closedError();
    }
    const done = new Promise<boolean>((resolve, reject) => this.batch.push({ staged, resolve, reject }));
    done.catch(() => {}); // the caller awaits it; a rejection must not be reported as unhandled before
    this.batchBytes += staged.bytes;
    this.maybeFlush();
    return { done };
  }

  /** From now on, publish whatever is staged without waiting for a full batch (commit). */
  drain(): void {
    this.draining = true;
    this.maybeFlush();
  }

  /** Drops everything staged and not yet publishing; later puts fail. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const items = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    for (const it of items) it.reject(closedError());
    await this.backend.discard?.(items.map((i) => i.staged));
    await this.flushing;
  }

  private maybeFlush(): void {
    if (this.flushing || this.batch.length === 0 || this.closed) return;
    if (this.draining || this.batchBytes >= (this.opts.flushBytes ?? STAGE_FLUSH_BYTES)) {
      this.startFlush();
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (!this.flushing && this.batch.length && !this.closed) this.startFlush();
      }, this.opts.flushAfterMs ?? STAGE_FLUSH_AFTER_MS);
      this.timer.unref();
    }
  }

  private startFlush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const items = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    this.flushing = (async () => {
      try {
        const created = await this.backend.publish!(items.map((i) => i.staged));
        for (const [k, it] of items.entries()) it.resolve(created[k]!);
      } catch (err) {
        for (const it of items) it.reject(err);
      }
    })().finally(() => {
      this.flushing = null;
      this.maybeFlush();
    });
  }
}

function closedError(): BulwarkError {
  return new BulwarkError("BULWARK_REPO_SESSION_CLOSED", "the ingest session was closed");
}
