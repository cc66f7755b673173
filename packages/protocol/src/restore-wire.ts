import { BinaryReader } from "@bufbuild/protobuf/wire";
import { type ChannelCredentials, type ClientOptions, makeGenericClientConstructor } from "@grpc/grpc-js";
import {
  type RestoreChunk,
  RestoreResponse,
  type RestoreServiceClient,
  RestoreServiceService,
} from "./generated/bulwark/v1/restore.js";

// The server's serializer for RestoreResponse (docs/protocol.md §3, "Answers to a Want"). A Chunks
// message is about 1 MiB of payload; the generated encoder writes it into a buffer that grows by
// copying, shifts every nested message over 127 bytes to widen its length prefix, then copies the
// result twice more (finish(), Buffer.from), so each payload byte was copied five to seven times.
// This writes a Chunks message into one buffer of exactly its size, copying each payload once;
// bulwark-server does that on its restore read workers (encodeChunksResponses) and the serializer
// passes the bytes through. The bytes are those of the generated encoder (same fields, order and omitted defaults; checked
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

/** Where a Chunks message's bytes go: per chunk its body and packed-index sizes, and the total. */
interface ChunksLayout {
  bodies: number[];
  packed: number[];
  inner: number;
  size: number;
}

/** The layout of RestoreResponse{chunks}; undefined if only the generated encoder can write it. */
function chunksLayout(chunks: RestoreChunk[]): ChunksLayout | undefined {
  const bodies: number[] = [];
  const packed: number[] = [];
  let inner = 0;
  for (const c of chunks) {
    for (const i of c.indexes) {
      if (!Number.isSafeInteger(i) || i < 0) return undefined;
    }
    if (c.encoding < 0 || !Number.isInteger(c.encoding)) return undefined;
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
  return { bodies, packed, inner, size: 1 + varintSize(inner) + inner };
}

/** Writes RestoreResponse{chunks} at `at` of `out` (room checked by the caller); returns its end. */
function writeChunks(chunks: RestoreChunk[], layout: ChunksLayout, out: Buffer, at: number): number {
  const { bodies, packed } = layout;
  out[at++] = 0x12; // RestoreResponse.chunks (2, length-delimited)
  at = writeVarint(out, at, layout.inner);
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
  return at;
}

/**
 * RestoreResponse as protobuf bytes; a Chunks message in a single pass. Bytes that are already a
 * RestoreResponse (encodeChunksResponses, on bulwark-server's read workers) pass through as they are.
 */
export function encodeRestoreResponse(message: RestoreResponse | Uint8Array): Buffer {
  if (message instanceof Uint8Array)
    return Buffer.isBuffer(message)
      ? message
      : Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  if (message.message?.$case !== "chunks") return Buffer.from(RestoreResponse.encode(message).finish());
  const chunks = message.message.value.chunks;
  const layout = chunksLayout(chunks);
  if (!layout) return Buffer.from(RestoreResponse.encode(message).finish());
  const out = Buffer.allocUnsafe(layout.size);
  const at = writeChunks(chunks, layout, out, 0);
  if (at !== out.length) throw new Error(`restore response encoder wrote ${at} of ${out.length} bytes`);
  return out;
}

/**
 * Several RestoreResponse{chunks} messages, one per batch, back to back in one buffer (one
 * transferable allocation for a worker thread), and each message's length. `alloc` gives the
 * buffer for a total size (at least that long; the messages start at its offset 0, `bytes` is
 * the part they fill): bulwark-server's read workers reuse buffers the main thread has sent.
 */
export function encodeChunksResponses(
  batches: RestoreChunk[][],
  alloc: (size: number) => Buffer = Buffer.allocUnsafeSlow,
): { bytes: Buffer; lengths: number[] } {
  const layouts = batches.map(chunksLayout);
  const fallback = batches.map((chunks, k) =>
    layouts[k]
      ? undefined
      : Buffer.from(RestoreResponse.encode({ message: { $case: "chunks", value: { chunks } } }).finish()),
  );
  const lengths = batches.map((_, k) => layouts[k]?.size ?? fallback[k]!.length);
  const total = lengths.reduce((n, l) => n + l, 0);
  const room = alloc(total);
  if (room.length < total) throw new Error(`restore response buffer of ${room.length} bytes for ${total}`);
  const bytes = room.subarray(0, total);
  let at = 0;
  batches.forEach((chunks, k) => {
    const layout = layouts[k];
    let end: number;
    if (layout) end = writeChunks(chunks, layout, bytes, at);
    else {
      bytes.set(fallback[k]!, at);
      end = at + fallback[k]!.length;
    }
    if (end - at !== lengths[k])
      throw new Error(`restore response encoder wrote ${end - at} of ${lengths[k]} bytes`);
    at = end;
  });
  return { bytes, lengths };
}

/** RestoreService with the single-pass response serializer: what bulwark-server registers. */
export const RestoreServiceFastResponses = {
  ...RestoreServiceService,
  restore: { ...RestoreServiceService.restore, responseSerialize: encodeRestoreResponse },
} as const;

// The agent's deserializer for RestoreResponse. The generated decoder copies every payload out of
// the message (Buffer.from(reader.bytes())); this one leaves a Chunks message's payloads as views
// into the message buffer, and when that buffer is grpc-js's own allocation for this one message
// (its framed copy: 5 header bytes, then the message, nothing after) it is recorded as
// transferable, so the agent can hand it to a worker thread without copying (takeTransferable).
// Same result as the generated decoder otherwise (checked by the same test file).

const transferable = new WeakSet<ArrayBuffer>();

/**
 * True (once) when `buffer` backs one received message that nothing else uses: the caller may
 * transfer it to another thread (the message's views on this thread become empty).
 */
export function takeTransferable(buffer: ArrayBufferLike): boolean {
  if (!(buffer instanceof ArrayBuffer) || !transferable.has(buffer)) return false;
  transferable.delete(buffer);
  return true;
}

/** grpc-js's framing prefix: compressed flag and 4-byte length. */
const GRPC_FRAME_PREFIX = 5;

function safeNumber(v: bigint | string): number {
  const n = Number(v);
  if (n > Number.MAX_SAFE_INTEGER) throw new Error("Value is larger than Number.MAX_SAFE_INTEGER");
  return n;
}

function decodeChunk(reader: BinaryReader, end: number): RestoreChunk {
  const chunk: RestoreChunk = {
    indexes: [],
    id: Buffer.alloc(0),
    encoding: 0,
    plainSize: 0,
    payload: Buffer.alloc(0),
  };
  while (reader.pos < end) {
    const tag = reader.uint32();
    if (tag === 8) chunk.indexes.push(safeNumber(reader.uint64()));
    else if (tag === 10) {
      const end2 = reader.uint32() + reader.pos;
      while (reader.pos < end2) chunk.indexes.push(safeNumber(reader.uint64()));
    } else if (tag === 18) chunk.id = Buffer.from(reader.bytes());
    else if (tag === 24) chunk.encoding = reader.int32();
    else if (tag === 32) chunk.plainSize = reader.uint32();
    else if (tag === 42) {
      const b = reader.bytes();
      chunk.payload = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    } else {
      if ((tag & 7) === 4 || tag === 0) break;
      reader.skip(tag & 7);
    }
  }
  if (reader.pos > end) throw new Error("premature EOF");
  return chunk;
}

/** RestoreResponse from protobuf bytes; a Chunks message with its payloads as views of `bytes`. */
export function decodeRestoreResponse(bytes: Uint8Array): RestoreResponse {
  const reader = new BinaryReader(bytes);
  // Fast path: the message is exactly one field 2 (chunks); anything else, the generated decoder.
  if (bytes.length === 0 || bytes[0] !== 0x12) return RestoreResponse.decode(bytes);
  reader.uint32();
  const length = reader.uint32();
  if (reader.pos + length !== bytes.length) return RestoreResponse.decode(bytes);
  const chunks: RestoreChunk[] = [];
  while (reader.pos < bytes.length) {
    const tag = reader.uint32();
    if (tag === 10) {
      const len = reader.uint32();
      chunks.push(decodeChunk(reader, reader.pos + len));
    } else {
      if ((tag & 7) === 4 || tag === 0) break;
      reader.skip(tag & 7);
    }
  }
  const buffer = bytes.buffer;
  if (
    buffer instanceof ArrayBuffer &&
    bytes.byteOffset === GRPC_FRAME_PREFIX &&
    buffer.byteLength === bytes.byteLength + GRPC_FRAME_PREFIX
  )
    transferable.add(buffer);
  return { message: { $case: "chunks", value: { chunks } } };
}

/** RestoreService with the view-keeping response deserializer: what bulwark-agent calls. */
const RestoreServiceViewResponses = {
  ...RestoreServiceService,
  restore: { ...RestoreServiceService.restore, responseDeserialize: decodeRestoreResponse },
} as const;

export const RestoreServiceFastClient = makeGenericClientConstructor(
  RestoreServiceViewResponses,
  "bulwark.v1.RestoreService",
) as unknown as new (
  address: string,
  credentials: ChannelCredentials,
  options?: Partial<ClientOptions>,
) => RestoreServiceClient;
