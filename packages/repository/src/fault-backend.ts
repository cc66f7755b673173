import { BulwarkError } from "@bulwark/errors";
import type { Backend, ObjectStat } from "./backend.js";

/** Faults a FaultyBackend can inject; each is armed for a number of matching calls. */
export type Fault =
  /** The next call of `op` fails with BULWARK_REPO_IO and does nothing. */
  | { kind: "fail"; op: keyof Backend; times?: number; keyPrefix?: string }
  /** Reads return the stored bytes with one bit flipped (a bad disk or cable). */
  | { kind: "bitflip"; times?: number; keyPrefix?: string }
  /** Reads return only the first half of the stored bytes. */
  | { kind: "truncate"; times?: number; keyPrefix?: string }
  /** Writes fail with BULWARK_REPO_NO_SPACE and leave nothing behind. */
  | { kind: "full"; times?: number; keyPrefix?: string };

/**
 * Wraps a backend and injects faults, for the conformance suite and for tests of everything
 * above the backend. Faults apply in the order armed; `times` defaults to 1 (Infinity = always).
 */
export class FaultyBackend implements Backend {
  private faults: (Fault & { left: number })[] = [];

  constructor(readonly inner: Backend) {}

  arm(fault: Fault): void {
    this.faults.push({ ...fault, left: fault.times ?? 1 });
  }

  disarm(): void {
    this.faults = [];
  }

  private take(pred: (f: Fault) => boolean, key: string): Fault | undefined {
    const f = this.faults.find((x) => x.left > 0 && pred(x) && (!x.keyPrefix || key.startsWith(x.keyPrefix)));
    if (f) f.left--;
    return f;
  }

  private maybeFail(op: keyof Backend, key: string, write: boolean): void {
    if (this.take((f) => f.kind === "fail" && f.op === op, key)) {
      throw new BulwarkError("BULWARK_REPO_IO", `injected failure of ${op} ${key}`);
    }
    if (write && this.take((f) => f.kind === "full", key)) {
      throw new BulwarkError("BULWARK_REPO_NO_SPACE", `injected disk full writing ${key}`);
    }
  }

  private damage(key: string, bytes: Buffer): Buffer {
    if (bytes.length > 0 && this.take((f) => f.kind === "bitflip", key)) {
      const copy = Buffer.from(bytes);
      const at = Math.floor(copy.length / 2);
      copy[at] = copy[at]! ^ 0x10;
      return copy;
    }
    if (this.take((f) => f.kind === "truncate", key)) return bytes.subarray(0, Math.floor(bytes.length / 2));
    return bytes;
  }

  async putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean> {
    this.maybeFail("putIfAbsent", key, true);
    return this.inner.putIfAbsent(key, bytes);
  }
  async replace(key: string, bytes: Uint8Array): Promise<void> {
    this.maybeFail("replace", key, true);
    return this.inner.replace(key, bytes);
  }
  async get(key: string): Promise<Buffer> {
    this.maybeFail("get", key, false);
    return this.damage(key, await this.inner.get(key));
  }
  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    this.maybeFail("getRange", key, false);
    return this.damage(key, await this.inner.getRange(key, offset, length));
  }
  async stat(key: string): Promise<ObjectStat | null> {
    this.maybeFail("stat", key, false);
    return this.inner.stat(key);
  }
  async *list(prefix: string): AsyncIterable<string> {
    this.maybeFail("list", prefix, false);
    yield* this.inner.list(prefix);
  }
  async delete(key: string): Promise<boolean> {
    this.maybeFail("delete", key, false);
    return this.inner.delete(key);
  }
  async touch(key: string): Promise<boolean> {
    this.maybeFail("touch", key, false);
    return this.inner.touch(key);
  }
  async rename(from: string, to: string): Promise<boolean> {
    this.maybeFail("rename", from, false);
    return this.inner.rename(from, to);
  }
  async removeStaleTemp(olderThanMs: number): Promise<number> {
    return this.inner.removeStaleTemp ? this.inner.removeStaleTemp(olderThanMs) : 0;
  }
}
