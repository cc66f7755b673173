import { open } from "node:fs/promises";
import { BulwarkError } from "@bulwark/errors";
import { dataExtents, dataSpan } from "./extents.js";
import { type IngestOptions, IngestSession } from "./ingest.js";
import type { RestorePoint } from "./records.js";
import type { Repository } from "./repository.js";

/** Ingests a stream of (offset, data) writes as one restore point; aborts on any failure. */
export async function ingestStream(
  repo: Repository,
  writes: AsyncIterable<{ offset: number; data: Uint8Array }>,
  opts: IngestOptions,
): Promise<RestorePoint> {
  const session = await IngestSession.open(repo, opts);
  try {
    for await (const w of writes) await session.write(w.offset, w.data);
    return await session.commit();
  } catch (err) {
    await session.abort();
    throw err;
  }
}

/** Bytes handed to the workers per call: whole chunks (a worker reads FILE_SCAN_BATCH_BYTES at a time). */
const READ_BLOCK = 4 * 1024 * 1024;

/** Ingests a whole image file or block device (its size is found by seeking to the end). */
export async function ingestFile(
  repo: Repository,
  path: string,
  opts: Omit<IngestOptions, "volumeSize">,
): Promise<RestorePoint> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, "r");
  } catch (err) {
    throw new BulwarkError(
      "BULWARK_REPO_INVALID_ARGUMENT",
      `cannot open ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  try {
    const st = await fh.stat();
    const size = st.isBlockDevice() ? await blockDeviceSize(fh) : st.size;
    const chunkSize = opts.chunkSize ?? repo.config.chunkSize;
    const block = Math.max(chunkSize, Math.floor(READ_BLOCK / chunkSize) * chunkSize);
    // Holes of a regular file are not read: their chunks are zero (extents.ts). Listed before the
    // session opens, while nothing of it is in flight.
    const extents = st.isFile() ? await dataExtents(path) : undefined;
    // The codec workers read the file themselves (see IngestSession.writeFromFile).
    const session = await IngestSession.open(repo, { ...opts, volumeSize: size });
    try {
      for (let offset = 0; offset < size; offset += block) {
        const end = Math.min(size, offset + block);
        const data = extents ? dataSpan(extents, offset, end, chunkSize) : { start: offset, end };
        if (!data) {
          session.zero(offset, end - offset);
          continue;
        }
        if (data.start > offset) session.zero(offset, data.start - offset);
        await session.writeFromFile(fh.fd, data.start, data.end - data.start, path);
        if (data.end < end) session.zero(data.end, end - data.end);
      }
      return await session.commit();
    } catch (err) {
      await session.abort();
      throw err;
    }
  } finally {
    await fh.close();
  }
}

async function blockDeviceSize(fh: Awaited<ReturnType<typeof open>>): Promise<number> {
  // A block device reports size 0 in stat; binary search the last readable byte.
  const probe = Buffer.alloc(1);
  let lo = 0;
  let hi = 1;
  while ((await fh.read(probe, 0, 1, hi - 1)).bytesRead === 1) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if ((await fh.read(probe, 0, 1, mid - 1)).bytesRead === 1) lo = mid;
    else hi = mid;
  }
  return lo;
}
