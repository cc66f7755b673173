import type { Socket } from "node:net";

const HIGH_WATER = 1024 * 1024;

/**
 * Exact-length reads from a socket, for a protocol parsed as a sequence of fixed fields. Pauses the
 * socket while more than HIGH_WATER bytes (or the pending read's length, if larger) are buffered,
 * so a client cannot make us buffer without bound. Only one read may be pending at a time.
 */
export class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private ended: Error | undefined;

  constructor(private readonly socket: Socket) {
    socket.on("data", (data: Buffer) => {
      this.chunks.push(data);
      this.buffered += data.length;
      this.pump();
      if (this.buffered > this.limit()) socket.pause();
    });
    const end = (why: string) => {
      this.ended ??= new Error(why);
      this.pump();
    };
    socket.on("end", () => end("connection closed by the client"));
    socket.on("close", () => end("connection closed"));
    socket.on("error", (err) => end(err.message));
  }

  /** Resolves with exactly n bytes, or rejects when the connection ends first. */
  read(n: number): Promise<Buffer> {
    if (this.waiter) throw new Error("SocketReader: a read is already pending");
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.pump();
    });
  }

  /** Reads and drops n bytes without holding them all (a refused write's payload). */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const step = Math.min(left, HIGH_WATER);
      await this.read(step);
      left -= step;
    }
  }

  private take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const head = this.chunks[0]!;
      const want = n - filled;
      if (head.length <= want) {
        head.copy(out, filled);
        filled += head.length;
        this.chunks.shift();
      } else {
        head.copy(out, filled, 0, want);
        this.chunks[0] = head.subarray(want);
        filled += want;
      }
    }
    this.buffered -= n;
    return out;
  }

  private pump(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.buffered >= w.n) {
      this.waiter = undefined;
      w.resolve(this.take(w.n));
    } else if (this.ended) {
      this.waiter = undefined;
      w.reject(this.ended);
      return;
    }
    if (this.buffered <= this.limit() && this.socket.isPaused()) this.socket.resume();
  }

  /** A pending read larger than HIGH_WATER (a write's payload) must be let in whole. */
  private limit(): number {
    return Math.max(HIGH_WATER, this.waiter?.n ?? 0);
  }
}
