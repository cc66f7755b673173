import { closeSync, openSync, readFileSync, writeSync } from "node:fs";

// Image-building and inspection helpers for tests outside apps/agent (test/ does not depend on
// @bulwark/filesystems or @bulwark/repository itself; these resolve through the agent's own deps).

export {
  BufferByteSource,
  type ByteRange,
  FileByteSource,
  ntfsUsedRanges,
  openVolume,
  usedRanges,
} from "@bulwark/filesystems";
export { DEFAULT_CHUNK_SIZE } from "@bulwark/repository";

/** Copies a filesystem image into a disk image (or device) at a partition's byte offset. */
export function place(disk: string, offset: number, image: string): void {
  const fd = openSync(disk, "r+");
  try {
    const bytes = readFileSync(image);
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Indexes of the `chunkSize` chunks in which `a` and `b` differ. */
export function differingChunks(a: Buffer, b: Buffer, chunkSize: number): number[] {
  const out: number[] = [];
  for (let at = 0; at < Math.max(a.length, b.length); at += chunkSize) {
    if (!a.subarray(at, at + chunkSize).equals(b.subarray(at, at + chunkSize))) out.push(at / chunkSize);
  }
  return out;
}
