// CRC32C (Castagnoli), the checksum of ext4's metadata_csum. node:zlib only has the IEEE CRC32.
const POLY = 0x82f63b78;
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/**
 * Raw CRC32C update without the final inversion, as the Linux kernel's crc32c(seed, data) computes
 * it; ext4 stores `crc32c(~0, …)` directly.
 */
export function crc32cRaw(seed: number, data: Buffer): number {
  let crc = seed >>> 0;
  for (let i = 0; i < data.length; i++) crc = TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return crc >>> 0;
}
