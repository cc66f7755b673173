// A minimal NBD client over a raw socket, for driving the server through edge cases that real
// clients never produce. It reuses nothing from the server but the protocol constants.
import { connect, type Socket } from "node:net";
import {
  IHAVEOPT,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_OPT_GO,
  NBD_REQUEST_MAGIC,
} from "../src/constants.js";

export class RawClient {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => undefined);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port }, () => resolve(new RawClient(s)));
      s.once("error", reject);
    });
  }

  /** Exactly n bytes; rejects with "closed" if the server closes first. */
  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.closed) throw new Error("closed");
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves true once the server has closed the connection (false after timeoutMs: generous,
   *  since it returns at the close and a loaded machine can be slow to get there). */
  async waitClosed(timeoutMs = 15_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) {
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.closed;
  }

  send(data: Buffer): void {
    this.socket.write(data);
  }

  /** Reads the server greeting and sends client flags. */
  async greet(
    flags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES,
  ): Promise<{ magic: bigint; opt: bigint; flags: number }> {
    const hello = await this.read(18);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(flags >>> 0, 0);
    this.send(c);
    return { magic: hello.readBigUInt64BE(0), opt: hello.readBigUInt64BE(8), flags: hello.readUInt16BE(16) };
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), magic = IHAVEOPT): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(magic, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(data.length, 12);
    this.send(Buffer.concat([h, data]));
  }

  async optionReply(): Promise<{ magic: bigint; option: number; type: number; data: Buffer }> {
    const h = await this.read(20);
    const data = await this.read(h.readUInt32BE(16));
    return { magic: h.readBigUInt64BE(0), option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
  }

  static infoRequest(name: string, infos: number[] = []): Buffer {
    const n = Buffer.from(name, "utf8");
    const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    b.writeUInt16BE(infos.length, 4 + n.length);
    for (const [i, t] of infos.entries()) b.writeUInt16BE(t, 4 + n.length + 2 + 2 * i);
    return b;
  }

  /** Greets and GOes to the export; returns the replies up to and including the final one. */
  async go(name: string, infos: number[] = []): Promise<{ type: number; data: Buffer }[]> {
    await this.greet();
    this.sendOption(NBD_OPT_GO, RawClient.infoRequest(name, infos));
    const replies: { type: number; data: Buffer }[] = [];
    for (;;) {
      const r = await this.optionReply();
      replies.push(r);
      if (r.type !== 3) return replies; // anything but NBD_REP_INFO ends the answer
    }
  }

  sendRequest(
    type: number,
    cookie: bigint,
    offset: bigint | number,
    length: number,
    payload?: Buffer,
    magic = NBD_REQUEST_MAGIC,
    flags = 0,
  ): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(magic, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.send(payload ? Buffer.concat([h, payload]) : h);
  }

  /** A simple reply; `dataLength` bytes of data are read when the error is 0. */
  async reply(dataLength = 0): Promise<{ magic: number; error: number; cookie: bigint; data: Buffer }> {
    const h = await this.read(16);
    const error = h.readUInt32BE(4);
    const data = error === 0 && dataLength > 0 ? await this.read(dataLength) : Buffer.alloc(0);
    return { magic: h.readUInt32BE(0), error, cookie: h.readBigUInt64BE(8), data };
  }

  close(): void {
    this.socket.destroy();
  }
}
