import { corrupt } from "./errors.js";

/**
 * Little-endian field access into an on-disk structure with a name for error messages. Every
 * accessor checks bounds, so a truncated or hostile structure fails with BULWARK_FS_CORRUPT
 * instead of a RangeError.
 */
export class Struct {
  constructor(
    readonly bytes: Buffer,
    readonly name: string,
  ) {}

  get length(): number {
    return this.bytes.length;
  }

  private check(offset: number, width: number, field: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + width > this.bytes.length) {
      throw corrupt(
        `${this.name}: field ${field} at ${offset} is outside the ${this.bytes.length}-byte structure`,
      );
    }
  }

  u8(offset: number, field = "u8"): number {
    this.check(offset, 1, field);
    return this.bytes.readUInt8(offset);
  }

  i8(offset: number, field = "i8"): number {
    this.check(offset, 1, field);
    return this.bytes.readInt8(offset);
  }

  u16(offset: number, field = "u16"): number {
    this.check(offset, 2, field);
    return this.bytes.readUInt16LE(offset);
  }

  u32(offset: number, field = "u32"): number {
    this.check(offset, 4, field);
    return this.bytes.readUInt32LE(offset);
  }

  /** A 64-bit field that must fit in a safe integer (any real disk address does). */
  u64(offset: number, field = "u64"): number {
    this.check(offset, 8, field);
    const value = this.bytes.readBigUInt64LE(offset);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw corrupt(`${this.name}: ${field} = ${value} is implausibly large`);
    }
    return Number(value);
  }

  slice(offset: number, length: number, field = "bytes"): Buffer {
    this.check(offset, length, field);
    return this.bytes.subarray(offset, offset + length);
  }
}

/** Unsigned little-endian integer of 0..8 bytes, as NTFS runlists store lengths. */
export function readUIntLE(bytes: Buffer, offset: number, width: number): number {
  let value = 0;
  for (let i = width - 1; i >= 0; i--) value = value * 256 + bytes[offset + i]!;
  return value;
}

/** Signed little-endian integer of 1..8 bytes (two's complement), as NTFS runlists store LCN deltas. */
export function readIntLE(bytes: Buffer, offset: number, width: number): number {
  let value = 0n;
  for (let i = width - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[offset + i]!);
  const signBit = 1n << BigInt(width * 8 - 1);
  if (value & signBit) value -= 1n << BigInt(width * 8);
  return Number(value);
}
