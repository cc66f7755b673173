import type { ByteSource } from "../../src/index.js";

/**
 * A byte source over an in-memory image with byte patches on top, and a read counter: the fuzz
 * tests mutate metadata without copying the image, and assert reads stay small and targeted.
 */
export class PatchedSource implements ByteSource {
  reads = 0;
  bytesRead = 0;

  constructor(
    private readonly base: Buffer,
    private readonly patches: Map<number, number> = new Map(),
  ) {}

  get size(): number {
    return this.base.length;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.reads++;
    this.bytesRead += length;
    const out = Buffer.from(this.base.subarray(offset, offset + length));
    for (const [at, value] of this.patches) {
      if (at >= offset && at < offset + length) out[at - offset] = value;
    }
    return out;
  }
}
