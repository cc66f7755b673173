import type { ByteSource } from "../byte-source.js";
import { sourceSize } from "../byte-source.js";
import { corrupt, unsupported } from "../errors.js";
import { addSetBitRuns, type ByteRange, RangeBuilder } from "../ranges.js";
import { type NtfsBootSector, readNtfsBootSector } from "./boot-sector.js";
import {
  findAttribute,
  NTFS_ATTR,
  NTFS_RECORD,
  readAttributeValue,
  readMftRecord,
  readMftRuns,
} from "./mft-record.js";

/** $Bitmap is read in pieces of this size: 1 MiB of bitmap covers 32 GiB at 4 KiB clusters. */
const BITMAP_READ_BATCH_BYTES = 1024 * 1024;

export interface NtfsUsedRanges {
  boot: NtfsBootSector;
  used: ByteRange[];
}

/** Allocated byte ranges of an NTFS volume from $Bitmap (MFT record 6). */
export async function ntfsUsedRanges(source: ByteSource): Promise<NtfsUsedRanges> {
  const volumeSize = sourceSize(source);
  const boot = await readNtfsBootSector(source);
  const mftRuns = await readMftRuns(source, boot);
  const bitmapRecord = await readMftRecord(source, boot, mftRuns, NTFS_RECORD.BITMAP);
  const data = findAttribute(bitmapRecord, NTFS_ATTR.DATA);
  if (!data) {
    // A $Bitmap so fragmented that its runs spill into extension records via $ATTRIBUTE_LIST.
    if (findAttribute(bitmapRecord, NTFS_ATTR.ATTRIBUTE_LIST)) {
      throw unsupported("$Bitmap's $DATA lives in an attribute list extension record");
    }
    throw corrupt("$Bitmap has no $DATA attribute");
  }
  const needed = Math.ceil(boot.totalClusters / 8);
  const available = data.resident ? data.value.length : data.initializedSize;
  if (available < needed) throw corrupt(`$Bitmap holds ${available} bytes, ${needed} needed for the volume`);

  const builder = new RangeBuilder();
  for (let at = 0; at < needed; at += BITMAP_READ_BATCH_BYTES) {
    const n = Math.min(BITMAP_READ_BATCH_BYTES, needed - at);
    const piece = await readAttributeValue(source, boot, data, at, n);
    const firstCluster = at * 8;
    addSetBitRuns(
      builder,
      piece,
      boot.totalClusters - firstCluster,
      firstCluster * boot.clusterSize,
      boot.clusterSize,
    );
  }
  // The backup boot sector follows the last counted sector, outside every cluster.
  const clusterEnd = boot.totalClusters * boot.clusterSize;
  const tailEnd = Math.min(volumeSize, (boot.totalSectors + 1) * boot.bytesPerSector);
  builder.add(clusterEnd, tailEnd - clusterEnd);
  // The boot sector itself is $Boot's first cluster and marked in the bitmap; keep it even if not.
  builder.add(0, boot.bytesPerSector);
  return { boot, used: builder.finish() };
}
