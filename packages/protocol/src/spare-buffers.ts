/**
 * Buffers a restore worker gets back for reuse once their message has been sent or written (the
 * server's read workers, the agent's decode workers): a fresh multi-MiB buffer per message costs
 * page faults, zeroed pages and garbage collections (docs/benchmarks.md, "Volume restore through
 * the agent"). Hands out the smallest spare that fits, else a new one of a power of two from
 * `minBytes` up, so that a reused one usually fits; keeps at most `max`, the larger ones (a small
 * buffer is the one that does not fit).
 */
export class SpareBuffers {
  private readonly spare: ArrayBuffer[] = [];

  constructor(
    private readonly max: number,
    private readonly minBytes: number,
    /** Makes a new buffer of `bytes` (it need not be zero-filled: callers write every byte they use). */
    private readonly allocate: (bytes: number) => ArrayBuffer,
  ) {}

  /** Takes back buffers that are done with. */
  keep(buffers: ArrayBuffer[] | undefined): void {
    const spare = this.spare;
    for (const b of buffers ?? []) {
      if (spare.length >= this.max) {
        let smallest = 0;
        for (let k = 1; k < spare.length; k++)
          if (spare[k]!.byteLength < spare[smallest]!.byteLength) smallest = k;
        if (spare[smallest]!.byteLength >= b.byteLength) continue;
        spare.splice(smallest, 1);
      }
      spare.push(b);
    }
  }

  /** A buffer of at least `size` bytes. */
  take(size: number): ArrayBuffer {
    const spare = this.spare;
    let best = -1;
    for (let k = 0; k < spare.length; k++) {
      const b = spare[k]!;
      if (b.byteLength >= size && (best < 0 || b.byteLength < spare[best]!.byteLength)) best = k;
    }
    if (best >= 0) return spare.splice(best, 1)[0]!;
    let bytes = this.minBytes;
    while (bytes < size) bytes *= 2;
    return this.allocate(bytes);
  }
}
