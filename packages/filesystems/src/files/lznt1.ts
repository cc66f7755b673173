import { corrupt } from "../errors.js";

/** LZNT1 works on 4 KiB chunks of uncompressed data ([MS-XCA] 2.5). */
export const LZNT1_CHUNK = 4096;
const CHUNK_COMPRESSED = 0x8000;
const CHUNK_SIZE_MASK = 0x0fff;

/**
 * Decompresses one NTFS compression unit: a sequence of chunks, each a 2-byte header (size - 3 in
 * the low 12 bits, bit 15 set when compressed) and its data; a zero header ends the unit. Every
 * chunk stands for 4 KiB of output (a short one is followed by zeros). Back-references are checked
 * against the bytes already produced, and the output never grows past `unitSize`.
 */
export function decompressLznt1(input: Buffer, unitSize: number): Buffer {
  const out = Buffer.alloc(unitSize);
  let inPos = 0;
  let chunkStart = 0;
  while (inPos + 2 <= input.length && chunkStart < unitSize) {
    const header = input.readUInt16LE(inPos);
    if (header === 0) break;
    const size = (header & CHUNK_SIZE_MASK) + 3; // header included
    const end = inPos + size;
    if (end > input.length) throw corrupt(`LZNT1 chunk at ${inPos} runs past the compressed data`);
    const chunkEnd = Math.min(chunkStart + LZNT1_CHUNK, unitSize);
    if (!(header & CHUNK_COMPRESSED)) {
      const raw = input.subarray(inPos + 2, end);
      if (raw.length > chunkEnd - chunkStart) throw corrupt("LZNT1 uncompressed chunk is larger than 4 KiB");
      raw.copy(out, chunkStart);
    } else {
      let p = inPos + 2;
      let o = chunkStart;
      while (p < end) {
        const flags = input[p++]!;
        for (let bit = 0; bit < 8 && p < end; bit++) {
          if (!(flags & (1 << bit))) {
            if (o >= chunkEnd) throw corrupt("LZNT1 chunk decompresses past 4 KiB");
            out[o++] = input[p++]!;
            continue;
          }
          if (p + 2 > end) throw corrupt("LZNT1 back-reference is truncated");
          const token = input.readUInt16LE(p);
          p += 2;
          // The split between offset and length bits grows with the position in the chunk.
          let lengthBits = 12;
          for (let at = o - chunkStart - 1; at >= 0x10; at >>= 1) lengthBits--;
          const length = (token & ((1 << lengthBits) - 1)) + 3;
          const offset = (token >>> lengthBits) + 1;
          if (o - offset < chunkStart) throw corrupt("LZNT1 back-reference points before its chunk");
          if (o + length > chunkEnd) throw corrupt("LZNT1 chunk decompresses past 4 KiB");
          // Byte by byte: the source may overlap what is being written (run-length style).
          for (let k = 0; k < length; k++, o++) out[o] = out[o - offset]!;
        }
      }
    }
    inPos = end;
    chunkStart += LZNT1_CHUNK;
  }
  return out;
}
