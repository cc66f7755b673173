/**
 * One bit per block, stored in pages allocated on first set: an overlay on a 1 TiB image with a
 * few writes costs a few pages, not 32 MiB. Clearing in an absent page is free.
 */
const PAGE_BITS = 2 ** 18; // 32 KiB per page: 1 GiB of 4 KiB blocks

export class BlockBitmap {
  private readonly pages = new Map<number, Uint8Array>();
  private count = 0;

  /** Number of set bits. */
  get size(): number {
    return this.count;
  }

  has(block: number): boolean {
    const page = this.pages.get(Math.floor(block / PAGE_BITS));
    if (!page) return false;
    const bit = block % PAGE_BITS;
    return (page[bit >> 3]! & (1 << (bit & 7))) !== 0;
  }

  /** Sets bits [from, to). */
  setRange(from: number, to: number): void {
    for (let b = from; b < to; b++) {
      const p = Math.floor(b / PAGE_BITS);
      let page = this.pages.get(p);
      if (!page) {
        page = new Uint8Array(PAGE_BITS / 8);
        this.pages.set(p, page);
      }
      const bit = b % PAGE_BITS;
      const mask = 1 << (bit & 7);
      if ((page[bit >> 3]! & mask) === 0) {
        page[bit >> 3]! |= mask;
        this.count++;
      }
    }
  }

  /** Clears bits [from, to). */
  clearRange(from: number, to: number): void {
    let b = from;
    while (b < to) {
      const p = Math.floor(b / PAGE_BITS);
      const pageEnd = Math.min(to, (p + 1) * PAGE_BITS);
      const page = this.pages.get(p);
      if (page) {
        for (; b < pageEnd; b++) {
          const bit = b % PAGE_BITS;
          const mask = 1 << (bit & 7);
          if ((page[bit >> 3]! & mask) !== 0) {
            page[bit >> 3]! &= ~mask;
            this.count--;
          }
        }
      }
      b = pageEnd;
    }
  }
}
