import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  IHAVEOPT,
  MAX_REQUEST_BYTES,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EPERM,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBDMAGIC,
  NbdServer,
  type OpenedExport,
} from "../src/index.js";
import { RawClient } from "./raw-client.js";

// Edge cases of the handshake and transmission phases, driven byte by byte over a real socket.

const SIZE = 1024 * 1024 + 1000; // not a multiple of 4 KiB, nor of a sector, on purpose
/** The export is padded with zeros to whole 512-byte sectors (docs/nbd.md, "Export size"). */
const EXPORT_SIZE = 1024 * 1024 + 1024;
const image = randomBytes(SIZE);
const source = { size: SIZE, read: async (o: number, l: number) => image.subarray(o, o + l) };

let server: NbdServer;
let port: number;
let ro: OpenedExport;
let rw: OpenedExport;

beforeAll(async () => {
  server = new NbdServer({ port: 0 });
  ({ port } = await server.listen());
  const expiresAt = new Date(Date.now() + 3600_000);
  ro = await server.addExport({ source, expiresAt });
  rw = await server.addExport({ source, expiresAt, writable: true });
});
afterAll(() => server.close());

async function connected(name: string): Promise<RawClient> {
  const c = await RawClient.open(port);
  const replies = await c.go(name);
  expect(replies.at(-1)!.type).toBe(NBD_REP_ACK);
  return c;
}

describe("handshake", () => {
  it("greets with NBDMAGIC, IHAVEOPT and fixed newstyle + no zeroes", async () => {
    const c = await RawClient.open(port);
    const hello = await c.greet();
    expect(hello.magic).toBe(NBDMAGIC);
    expect(hello.opt).toBe(IHAVEOPT);
    expect(hello.flags).toBe(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    c.close();
  });

  it("disconnects a client that does not speak fixed newstyle or sends unknown flags", async () => {
    for (const flags of [0, NBD_FLAG_C_FIXED_NEWSTYLE | 0x80]) {
      const c = await RawClient.open(port);
      await c.greet(flags);
      expect(await c.waitClosed()).toBe(true);
    }
  });

  it("disconnects on a bad option magic", async () => {
    const c = await RawClient.open(port);
    await c.greet();
    c.sendOption(NBD_OPT_GO, RawClient.infoRequest(ro.name), 0x1234n);
    expect(await c.waitClosed()).toBe(true);
  });

  it("answers unknown options and STRUCTURED_REPLY with ERR_UNSUP, LIST with ERR_POLICY, and keeps going", async () => {
    const c = await RawClient.open(port);
    await c.greet();
    for (const [opt, want] of [
      [99, NBD_REP_ERR_UNSUP],
      [NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_UNSUP],
      [NBD_OPT_LIST, NBD_REP_ERR_POLICY],
    ] as const) {
      c.sendOption(opt);
      const r = await c.optionReply();
      expect(r.magic).toBe(NBD_REP_MAGIC);
      expect(r.option).toBe(opt);
      expect(r.type).toBe(want);
      // LIST must not leak the export names.
      expect(r.data.toString()).not.toContain(ro.name);
    }
    c.sendOption(NBD_OPT_ABORT);
    expect((await c.optionReply()).type).toBe(NBD_REP_ACK);
    expect(await c.waitClosed()).toBe(true);
  });

  it("INFO: unknown name → ERR_UNKNOWN, malformed → ERR_INVALID, known → size, flags and block sizes", async () => {
    const c = await RawClient.open(port);
    await c.greet();
    c.sendOption(NBD_OPT_INFO, RawClient.infoRequest(randomBytes(32).toString("base64url")));
    expect((await c.optionReply()).type).toBe(NBD_REP_ERR_UNKNOWN);
    const bad = RawClient.infoRequest(ro.name);
    bad.writeUInt32BE(9999, 0); // name length beyond the data
    c.sendOption(NBD_OPT_INFO, bad);
    expect((await c.optionReply()).type).toBe(NBD_REP_ERR_INVALID);

    c.sendOption(NBD_OPT_INFO, RawClient.infoRequest(ro.name, [NBD_INFO_BLOCK_SIZE]));
    const info = await c.optionReply();
    expect(info.type).toBe(NBD_REP_INFO);
    expect(info.data.readUInt16BE(0)).toBe(NBD_INFO_EXPORT);
    expect(Number(info.data.readBigUInt64BE(2))).toBe(EXPORT_SIZE);
    expect(info.data.readUInt16BE(10)).toBe(NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_FLUSH);
    const sizes = await c.optionReply();
    expect(sizes.data.readUInt16BE(0)).toBe(NBD_INFO_BLOCK_SIZE);
    expect(sizes.data.readUInt32BE(10)).toBe(MAX_REQUEST_BYTES);
    expect((await c.optionReply()).type).toBe(NBD_REP_ACK);

    // INFO leaves the client in negotiation: GO still works afterwards.
    c.sendOption(NBD_OPT_GO, RawClient.infoRequest(rw.name));
    const go = await c.optionReply();
    expect(go.data.readUInt16BE(10)).toBe(
      NBD_FLAG_HAS_FLAGS |
        NBD_FLAG_SEND_FLUSH |
        NBD_FLAG_SEND_FUA |
        NBD_FLAG_SEND_TRIM |
        NBD_FLAG_SEND_WRITE_ZEROES,
    );
    expect((await c.optionReply()).type).toBe(NBD_REP_ACK);
    c.sendRequest(NBD_CMD_READ, 1n, 0, 16);
    expect((await c.reply(16)).data).toEqual(image.subarray(0, 16));
    c.close();
  });

  it("EXPORT_NAME: a known name starts transmission (with 124 zero bytes when asked), an unknown one closes", async () => {
    const c = await RawClient.open(port);
    await c.greet(NBD_FLAG_C_FIXED_NEWSTYLE); // no NO_ZEROES: the padding is sent
    c.sendOption(NBD_OPT_EXPORT_NAME, Buffer.from(ro.name));
    const reply = await c.read(8 + 2 + 124);
    expect(Number(reply.readBigUInt64BE(0))).toBe(EXPORT_SIZE);
    expect(reply.readUInt16BE(8) & NBD_FLAG_READ_ONLY).toBe(NBD_FLAG_READ_ONLY);
    expect(reply.subarray(10).equals(Buffer.alloc(124))).toBe(true);
    c.sendRequest(NBD_CMD_READ, 7n, 100, 50);
    const r = await c.reply(50);
    expect(r.cookie).toBe(7n);
    expect(r.data).toEqual(image.subarray(100, 150));
    c.close();

    const d = await RawClient.open(port);
    await d.greet();
    d.sendOption(NBD_OPT_EXPORT_NAME, Buffer.from("not-an-export"));
    expect(await d.waitClosed()).toBe(true);
  });
});

describe("transmission", () => {
  it("reads, refuses past-the-end and oversized reads with EINVAL, and stays usable", async () => {
    const c = await connected(ro.name);
    c.sendRequest(NBD_CMD_READ, 1n, EXPORT_SIZE - 10, 20);
    expect((await c.reply()).error).toBe(NBD_EINVAL);
    c.sendRequest(NBD_CMD_READ, 2n, 2n ** 63n, 1);
    expect((await c.reply()).error).toBe(NBD_EINVAL);
    c.sendRequest(NBD_CMD_READ, 3n, 0, MAX_REQUEST_BYTES + 1);
    expect((await c.reply()).error).toBe(NBD_EINVAL);
    c.sendRequest(NBD_CMD_READ, 4n, SIZE - 10, EXPORT_SIZE - SIZE + 10);
    const last = await c.reply(EXPORT_SIZE - SIZE + 10);
    expect(last.magic).toBe(NBD_SIMPLE_REPLY_MAGIC);
    expect(last.cookie).toBe(4n);
    expect(last.data).toEqual(Buffer.concat([image.subarray(SIZE - 10), Buffer.alloc(EXPORT_SIZE - SIZE)]));
    c.close();
  });

  it("refuses WRITE, TRIM and WRITE_ZEROES on a read-only export with EPERM; FLUSH succeeds", async () => {
    const c = await connected(ro.name);
    c.sendRequest(NBD_CMD_WRITE, 1n, 0, 4096, Buffer.alloc(4096, 0xee));
    expect((await c.reply()).error).toBe(NBD_EPERM);
    c.sendRequest(NBD_CMD_TRIM, 2n, 0, 4096);
    expect((await c.reply()).error).toBe(NBD_EPERM);
    c.sendRequest(NBD_CMD_WRITE_ZEROES, 3n, 0, 4096);
    expect((await c.reply()).error).toBe(NBD_EPERM);
    c.sendRequest(NBD_CMD_FLUSH, 4n, 0, 0);
    expect((await c.reply()).error).toBe(0);
    c.sendRequest(NBD_CMD_READ, 5n, 0, 4096);
    expect((await c.reply(4096)).data).toEqual(image.subarray(0, 4096)); // unchanged, and in step
    c.close();
  });

  it("discards an oversized WRITE's payload, answers EINVAL and stays in step", async () => {
    const c = await connected(rw.name);
    const big = MAX_REQUEST_BYTES + 4096;
    c.sendRequest(NBD_CMD_WRITE, 1n, 0, big, Buffer.alloc(big, 0x11));
    expect((await c.reply()).error).toBe(NBD_EINVAL);
    c.sendRequest(NBD_CMD_READ, 2n, 0, 8);
    expect((await c.reply(8)).data).toEqual(image.subarray(0, 8));
    c.close();
  });

  it("answers unknown commands with EINVAL", async () => {
    const c = await connected(ro.name);
    c.sendRequest(42, 9n, 0, 0);
    const r = await c.reply();
    expect(r.cookie).toBe(9n);
    expect(r.error).toBe(NBD_EINVAL);
    c.close();
  });

  it("closes on a bad request magic and keeps serving other clients", async () => {
    const c = await connected(ro.name);
    c.sendRequest(NBD_CMD_READ, 1n, 0, 8, undefined, 0xdeadbeef);
    expect(await c.waitClosed()).toBe(true);
    const d = await connected(ro.name);
    d.sendRequest(NBD_CMD_READ, 1n, 0, 8);
    expect((await d.reply(8)).data).toEqual(image.subarray(0, 8));
    d.sendRequest(NBD_CMD_DISC, 2n, 0, 0);
    expect(await d.waitClosed()).toBe(true);
  });

  it("handles pipelined requests and matches replies by cookie", async () => {
    const c = await connected(ro.name);
    const n = 40;
    for (let i = 0; i < n; i++) c.sendRequest(NBD_CMD_READ, BigInt(i), i * 8192, 8192);
    const seen = new Map<bigint, Buffer>();
    for (let i = 0; i < n; i++) {
      const r = await c.reply(8192);
      expect(r.error).toBe(0);
      seen.set(r.cookie, Buffer.from(r.data));
    }
    for (let i = 0; i < n; i++) expect(seen.get(BigInt(i))).toEqual(image.subarray(i * 8192, (i + 1) * 8192));
    c.close();
  });

  it("writes to a writable export land in its overlay, never in the source", async () => {
    const before = Buffer.from(image);
    const c = await connected(rw.name);
    // FUA: the overlay is flushed before the reply.
    c.sendRequest(NBD_CMD_WRITE, 1n, 1000, 5000, Buffer.alloc(5000, 0xab), undefined, NBD_CMD_FLAG_FUA);
    expect((await c.reply()).error).toBe(0);
    c.sendRequest(NBD_CMD_WRITE_ZEROES, 2n, 20000, 10000);
    expect((await c.reply()).error).toBe(0);
    c.sendRequest(NBD_CMD_FLUSH, 3n, 0, 0);
    expect((await c.reply()).error).toBe(0);
    c.sendRequest(NBD_CMD_READ, 4n, 0, 40000);
    const got = (await c.reply(40000)).data;
    const want = Buffer.from(image.subarray(0, 40000));
    want.fill(0xab, 1000, 6000);
    want.fill(0, 20000, 30000);
    expect(got.equals(want)).toBe(true);
    c.close();
    expect(image.equals(before)).toBe(true);
    // A new connection to the same export sees the writes (the overlay lives with the export).
    const d = await connected(rw.name);
    d.sendRequest(NBD_CMD_READ, 1n, 1000, 10);
    expect((await d.reply(10)).data).toEqual(Buffer.alloc(10, 0xab));
    d.close();
  });
});

describe("limits and expiry", () => {
  it("disconnects a client that does not finish the handshake in time, not one that did", async () => {
    const s = new NbdServer({ port: 0, handshakeTimeoutMs: 1500 });
    const { port: p } = await s.listen();
    try {
      const e = await s.addExport({ source, expiresAt: new Date(Date.now() + 60_000) });
      const idle = await RawClient.open(p);
      await idle.read(18); // the greeting, then silence
      const done = await RawClient.open(p);
      expect((await done.go(e.name)).at(-1)!.type).toBe(NBD_REP_ACK);
      expect(await idle.waitClosed(15_000)).toBe(true);
      await new Promise((r) => setTimeout(r, 500));
      done.sendRequest(NBD_CMD_READ, 1n, 0, 8);
      expect((await done.reply(8)).data).toEqual(image.subarray(0, 8));
      done.close();
    } finally {
      await s.close();
    }
  });

  it("refuses a GO beyond the export's connection limit with ERR_POLICY", async () => {
    const one = await server.addExport({
      source,
      expiresAt: new Date(Date.now() + 60_000),
      maxConnections: 1,
    });
    const a = await connected(one.name);
    const b = await RawClient.open(port);
    const replies = await b.go(one.name);
    expect(replies.at(-1)!.type).toBe(NBD_REP_ERR_POLICY);
    expect(server.getExport(one.id)!.connections).toBe(1);
    a.close();
    b.close();
    await server.removeExport(one.id);
  });

  it("closes connections at expiry, refuses new ones and reports the expiry once", async () => {
    const expired: string[] = [];
    const e = await server.addExport({
      source,
      writable: true,
      // Real timers: long enough for an in-process client to connect on a loaded machine.
      expiresAt: new Date(Date.now() + 3000),
      onExpire: (info) => expired.push(info.id),
    });
    const c = await connected(e.name);
    c.sendRequest(NBD_CMD_READ, 1n, 0, 8);
    expect((await c.reply(8)).error).toBe(0);
    expect(expired).toEqual([]);
    expect(await c.waitClosed(15_000)).toBe(true);
    // The hook runs once the overlay is released, just after the connections are cut.
    await expect.poll(() => expired).toEqual([e.id]);
    expect(server.getExport(e.id)).toBeUndefined();
    const d = await RawClient.open(port);
    expect((await d.go(e.name)).at(-1)!.type).toBe(NBD_REP_ERR_UNKNOWN);
    d.close();
  });

  it("treats an export past its expiry as unknown even before its timer fires (injected clock)", async () => {
    let now = new Date("2030-01-01T00:00:00Z");
    const s = new NbdServer({ port: 0, now: () => now });
    const { port: p } = await s.listen();
    try {
      const e = await s.addExport({ source, expiresAt: new Date(now.getTime() + 3600_000) });
      now = new Date(now.getTime() + 3600_000);
      const c = await RawClient.open(p);
      expect((await c.go(e.name)).at(-1)!.type).toBe(NBD_REP_ERR_UNKNOWN);
      c.close();
      await expect(s.removeExport(e.id)).rejects.toMatchObject({ code: "BULWARK_NBD_EXPORT_NOT_FOUND" });
    } finally {
      await s.close();
    }
  });

  it("refuses an expiry in the past and a listener beyond its connection limit", async () => {
    await expect(server.addExport({ source, expiresAt: new Date(Date.now() - 1) })).rejects.toMatchObject({
      code: "BULWARK_NBD_BAD_REQUEST",
    });
    const s = new NbdServer({ port: 0, maxConnections: 1 });
    const { port: p } = await s.listen();
    try {
      const a = await RawClient.open(p);
      await a.read(18);
      const b = await RawClient.open(p);
      expect(await b.waitClosed()).toBe(true);
      a.close();
    } finally {
      await s.close();
    }
  });
});
