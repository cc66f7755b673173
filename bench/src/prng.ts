import { createCipheriv, createHash } from "node:crypto";

/**
 * Seeded randomness, so the same `--seed` builds a byte-identical image on every machine.
 * Decisions (sizes, kinds, offsets) come from sfc32; bulk bytes come from AES-256-CTR, which is
 * deterministic for a key and runs at memory-ish speed where a JS loop would not.
 */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: string) {
    const h = createHash("sha256").update(`bulwark-bench:prng:${seed}`).digest();
    this.a = h.readUInt32LE(0);
    this.b = h.readUInt32LE(4);
    this.c = h.readUInt32LE(8);
    this.d = h.readUInt32LE(12);
    for (let i = 0; i < 16; i++) this.next32();
  }

  /** sfc32: small, fast, passes PractRand for our purposes. */
  next32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next32() / 4294967296;
  }

  /** Uniform integer in [min, max] (inclusive); exact for ranges up to 2^53. */
  int(min: number, max: number): number {
    const span = max - min + 1;
    const r = (this.next32() >>> 11) * 4294967296 + this.next32(); // 53 random bits, exact in a double
    return min + Math.floor((r / 9007199254740992) * span);
  }

  /** Picks by weight: `pick({a: 3, b: 1})` returns "a" three times as often as "b". */
  pick<K extends string>(weights: Record<K, number>): K {
    const entries = Object.entries(weights) as [K, number][];
    const total = entries.reduce((sum, [, w]) => sum + w, 0);
    let r = this.float() * total;
    for (const [key, w] of entries) {
      r -= w;
      if (r < 0) return key;
    }
    return entries[entries.length - 1]![0];
  }
}

/** An endless deterministic stream of incompressible bytes for one (seed, name). */
export class RandomBytes {
  private readonly cipher;
  private zeros = Buffer.alloc(0);

  constructor(seed: string, name: string) {
    const key = createHash("sha256").update(`bulwark-bench:bytes:${seed}:${name}`).digest();
    this.cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  }

  next(length: number): Buffer {
    if (this.zeros.length < length) this.zeros = Buffer.alloc(length);
    return this.cipher.update(this.zeros.subarray(0, length));
  }
}
