import { createRequire } from "node:module";
import { BulwarkError } from "@bulwark/errors";
import { ChunkEncoding } from "@bulwark/protocol";

// Turns an uploaded chunk payload back into its plaintext, never allocating more than the chunk's
// length: zstd-napi's high-level decompress() sizes its output from the frame header, which an
// agent controls (a 10-byte frame can claim 4 GiB). The low-level binding decompresses into a
// buffer we size ourselves and fails when the content does not fit.

type ZstdBinding = typeof import("zstd-napi/binding.js");
const zstd = createRequire(import.meta.url)("zstd-napi/binding.js") as ZstdBinding;
/** One decompression context per process: reusing it avoids an allocation per chunk. */
const dctx = new zstd.DCtx();

function invalid(message: string, details: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_PROTO_CHUNK_INVALID", message, { details });
}

/** The plaintext of a chunk that must be exactly `length` bytes long. */
export function decodePayload(
  encoding: ChunkEncoding,
  payload: Uint8Array,
  length: number,
  what: Record<string, unknown>,
): Buffer {
  if (encoding === ChunkEncoding.CHUNK_ENCODING_RAW) {
    if (payload.length !== length) {
      throw invalid(`raw chunk payload is ${payload.length} bytes, the chunk has ${length}`, what);
    }
    return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  }
  if (encoding !== ChunkEncoding.CHUNK_ENCODING_ZSTD) {
    throw invalid(`chunk encoding ${encoding} is not RAW or ZSTD`, what);
  }
  const out = Buffer.allocUnsafe(length);
  let written: number;
  try {
    written = dctx.decompress(out, payload);
  } catch (err) {
    throw invalid(`zstd payload does not decompress to ${length} bytes: ${(err as Error).message}`, what);
  }
  if (written !== length) {
    throw invalid(`zstd payload decompresses to ${written} bytes, the chunk has ${length}`, what);
  }
  return out;
}
