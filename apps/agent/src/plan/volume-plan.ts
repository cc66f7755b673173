import {
  type ByteRange,
  type ByteSource,
  detectFilesystem,
  type FilesystemType,
  isUsedRangesFallback,
  usedRanges,
} from "@bulwark/filesystems";
import type { ChunkRun } from "./chunk-runs.js";
import { buildReadPlan, type ReadPlan } from "./read-plan.js";

export interface VolumePlan {
  plan: ReadPlan;
  filesystem: FilesystemType;
  /** Why the bitmap was not used, when it was not (unsupported filesystem, damage, dirty journal). */
  bitmapSkipped?: string;
}

/**
 * Plans one volume: its filesystem bitmap when readable, CBT when the snapshot provides it. A bitmap
 * that cannot be read never fails a backup: reading everything is always correct, only slower.
 */
export async function planVolume(
  source: ByteSource,
  options: { chunkSize: number; changed?: ByteRange[]; previousUnused?: ChunkRun[] },
): Promise<VolumePlan> {
  const volumeSize = Number(source.size);
  const filesystem: FilesystemType = await detectFilesystem(source);
  let used: ByteRange[] | undefined;
  let bitmapSkipped: string | undefined;
  try {
    used = (await usedRanges(source)).used;
  } catch (err) {
    if (!isUsedRangesFallback(err)) throw err;
    bitmapSkipped = `${err.code}: ${err.message}`;
  }
  const plan = buildReadPlan({
    volumeSize,
    chunkSize: options.chunkSize,
    used,
    changed: options.changed,
    previousUnused: options.previousUnused,
  });
  return { plan, filesystem, ...(bitmapSkipped ? { bitmapSkipped } : {}) };
}
