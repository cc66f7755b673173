import { Struct } from "../binary.js";
import { corrupt } from "../errors.js";

/** Update sequence arrays protect every 512-byte stride, whatever the sector size (NTFS on-disk format). */
export const NTFS_USA_STRIDE = 512;

/**
 * Applies the update sequence ("fixups") of a multi-sector record (FILE, INDX) in place: the last
 * two bytes of each 512-byte stride must equal the update sequence number and are replaced by the
 * saved bytes. A mismatch means a torn write or damage.
 */
export function applyFixups(record: Buffer, what: string): void {
  const s = new Struct(record, what);
  const usaOffset = s.u16(0x04, "update sequence offset");
  const usaCount = s.u16(0x06, "update sequence count");
  const strides = record.length / NTFS_USA_STRIDE;
  if (usaCount === 0 || usaCount - 1 !== strides) {
    throw corrupt(`${what}: update sequence count ${usaCount} does not match ${strides} strides`);
  }
  if (usaOffset % 2 !== 0 || usaOffset + usaCount * 2 > NTFS_USA_STRIDE - 2) {
    throw corrupt(`${what}: update sequence array at ${usaOffset} is out of place`);
  }
  const usn = s.u16(usaOffset, "update sequence number");
  for (let i = 1; i < usaCount; i++) {
    const at = i * NTFS_USA_STRIDE - 2;
    if (record.readUInt16LE(at) !== usn) {
      throw corrupt(`${what}: stride ${i} fails its update sequence check (torn write or damage)`);
    }
    record.writeUInt16LE(s.u16(usaOffset + i * 2, "update sequence entry"), at);
  }
}
