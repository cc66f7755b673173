import { RestoreResponse, RestoreServiceService } from "./generated/bulwark/v1/restore.js";

// The server's serializer for RestoreResponse (docs/protocol.md §3, "Answers to a Want"). A Chunks
// message is about 1 MiB of payload; the generated encoder writes it into a buffer that grows by
// copying, shifts every nested message over 127 bytes to widen its length prefix, then copies the
// result twice more (finish(), Buffer.from), so each payload byte was copied five to seven times.
// This writes a Chunks message into one buffer of exactly its size, copying each payload once.
// The bytes are those of the generated encoder (same fields, order and omitted defaults; checked
// by packages/protocol/test/restore-wire.test.ts); other cases use the generated encoder.

function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function writeVarint(buf: Buffer, at: number, v: number): number {
  while (v >= 128) {
    buf[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[at++] = v;
  return at;
}

/** RestoreResponse as protobuf bytes; a Chunks message in a single pass. */
export function encodeRestoreResponse(message: RestoreResponse): Buffer {
  if (message.message?.$case !== "chunks") return Buffer.from(RestoreResponse.encode(message).finish());
  const chunks = message.message.value.chunks;
  // Sizes first: per chunk its body and its packed indexes, then the two enclosing lengths.
  const bodies: number[] = [];
  const packed: number[] = [];
  let inner = 0;
  for (const c of chunks) {
    for (const i of c.indexes) {
      if (!Number.isSafeInteger(i) || i < 0) return Buffer.from(RestoreResponse.encode(message).finish());
    }
    if (c.encoding < 0 || !Number.isInteger(c.encoding))
      return Buffer.from(RestoreResponse.encode(message).finish());
    let p = 0;
    for (const i of c.indexes) p += varintSize(i);
    let body = 0;
    if (c.indexes.length !== 0) body += 1 + varintSize(p) + p;
    if (c.id.length !== 0) body += 1 + varintSize(c.id.length) + c.id.length;
    if (c.encoding !== 0) body += 1 + varintSize(c.encoding);
    if (c.plainSize !== 0) body += 1 + varintSize(c.plainSize);
    if (c.payload.length !== 0) body += 1 + varintSize(c.payload.length) + c.payload.length;
    packed.push(p);
    bodies.push(body);
    inner += 1 + varintSize(body) + body;
  }
  const out = Buffer.allocUnsafe(1 + varintSize(inner) + inner);
  let at = 0;
  out[at++] = 0x12; // RestoreResponse.chunks (2, length-delimited)
  at = writeVarint(out, at, inner);
  chunks.forEach((c, k) => {
    out[at++] = 0x0a; // RestoreChunks.chunks (1)
    at = writeVarint(out, at, bodies[k]!);
    if (c.indexes.length !== 0) {
      out[at++] = 0x0a; // indexes (1, packed)
      at = writeVarint(out, at, packed[k]!);
      for (const i of c.indexes) at = writeVarint(out, at, i);
    }
    if (c.id.length !== 0) {
      out[at++] = 0x12; // id (2)
      at = writeVarint(out, at, c.id.length);
      out.set(c.id, at);
      at += c.id.length;
    }
    if (c.encoding !== 0) {
      out[at++] = 0x18; // encoding (3)
      at = writeVarint(out, at, c.encoding);
    }
    if (c.plainSize !== 0) {
      out[at++] = 0x20; // plain_size (4)
      at = writeVarint(out, at, c.plainSize);
    }
    if (c.payload.length !== 0) {
      out[at++] = 0x2a; // payload (5)
      at = writeVarint(out, at, c.payload.length);
      out.set(c.payload, at);
      at += c.payload.length;
    }
  });
  if (at !== out.length) throw new Error(`restore response encoder wrote ${at} of ${out.length} bytes`);
  return out;
}

/** RestoreService with the single-pass response serializer: what bulwark-server registers. */
export const RestoreServiceFastResponses = {
  ...RestoreServiceService,
  restore: { ...RestoreServiceService.restore, responseSerialize: encodeRestoreResponse },
} as const;
