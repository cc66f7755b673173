import type { BlockSource } from "./source.js";

/**
 * NBD clients built on a sector-based block layer (qemu) see a size rounded up to 512 bytes and,
 * with simple replies, cannot read a partial last sector: qemu 7.2 asks the server for the bytes up
 * to the end but then waits for the whole sector and stalls or fails with EIO. qemu-nbd itself
 * exports such files rounded up. We do the same: the export is the source padded with zeros to the
 * next multiple of SECTOR_BYTES (docs/nbd.md, "Export size"). Real volumes are whole sectors already.
 */
export const SECTOR_BYTES = 512;

export function padToSector(source: BlockSource): BlockSource {
  const size = Math.ceil(source.size / SECTOR_BYTES) * SECTOR_BYTES;
  if (size === source.size) return source;
  return {
    size,
    async read(offset: number, length: number): Promise<Buffer> {
      const inSource = Math.max(0, Math.min(length, source.size - offset));
      if (inSource === length) return source.read(offset, length);
      const out = Buffer.alloc(length);
      if (inSource > 0) (await source.read(offset, inSource)).copy(out, 0);
      return out;
    },
  };
}
