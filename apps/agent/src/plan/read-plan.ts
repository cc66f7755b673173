import type { ByteRange } from "@bulwark/filesystems";
import { invalidArgument } from "../errors.js";
import {
  type ChunkRun,
  chunksTouched,
  complementRuns,
  countRuns,
  intersectRuns,
  unionRuns,
} from "./chunk-runs.js";

/** How the chunks to read were chosen, best first; reported with every backup. */
export type ChangeMethod = "cbt" | "bitmap+hash" | "full+hash";

/** Chunk sizes must be whole sectors of 4 KiB so chunks align with every filesystem block. */
export const CHUNK_ALIGNMENT = 4096;

export interface ReadPlanInput {
  volumeSize: number;
  /** Chosen by the repository (by measurement); any multiple of 4 KiB. */
  chunkSize: number;
  /** Allocated byte ranges per the filesystem bitmap; undefined when unknown (read everything). */
  used?: ByteRange[];
  /** Changed byte ranges since the previous committed backup (thin_delta); undefined without CBT. */
  changed?: ByteRange[];
  /**
   * Chunks the previous index recorded as unused (never read). With CBT, such a chunk that is in use
   * now must be read even if unchanged: the previous backup does not hold its bytes.
   */
  previousUnused?: ChunkRun[];
}

export interface ReadPlan {
  method: ChangeMethod;
  volumeSize: number;
  chunkSize: number;
  chunkCount: number;
  /** Chunks to read and hash, ascending. */
  read: ChunkRun[];
  /** Chunks with no allocated byte: recorded as unused (restored as zeroes) without reading. */
  unused: ChunkRun[];
  /** CBT only: chunks unchanged since the previous backup, whose index entry is carried over. */
  carried: ChunkRun[];
  bytesToRead: number;
}

export function checkChunkSize(chunkSize: number): void {
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0 || chunkSize % CHUNK_ALIGNMENT !== 0) {
    throw invalidArgument(`chunk size ${chunkSize} is not a positive multiple of ${CHUNK_ALIGNMENT}`);
  }
}

/**
 * Decides which chunks to read. Order of preference: CBT (read only changed chunks), then the
 * allocation bitmap (skip wholly unused chunks, hash the rest and compare with the cached index),
 * then everything. A chunk is skipped only when no byte of it is allocated.
 */
export function buildReadPlan(input: ReadPlanInput): ReadPlan {
  const { volumeSize, chunkSize } = input;
  checkChunkSize(chunkSize);
  if (!Number.isSafeInteger(volumeSize) || volumeSize < 0)
    throw invalidArgument(`volume size ${volumeSize} is invalid`);
  const chunkCount = Math.ceil(volumeSize / chunkSize);
  const all: ChunkRun[] = chunkCount > 0 ? [{ first: 0, count: chunkCount }] : [];
  for (const ranges of [input.used, input.changed]) {
    for (const r of ranges ?? []) {
      if (r.offset < 0 || r.length < 0 || r.offset + r.length > volumeSize) {
        throw invalidArgument(`range ${r.offset}+${r.length} lies outside the ${volumeSize}-byte volume`);
      }
    }
  }
  const inUse = input.used ? chunksTouched(input.used, chunkSize, chunkCount) : all;
  const unused = complementRuns(inUse, chunkCount);
  let read = inUse;
  let carried: ChunkRun[] = [];
  if (input.changed) {
    let mustRead = chunksTouched(input.changed, chunkSize, chunkCount);
    if (input.previousUnused?.length) mustRead = unionRuns(mustRead, input.previousUnused);
    read = intersectRuns(inUse, mustRead);
    carried = intersectRuns(inUse, complementRuns(mustRead, chunkCount));
  }
  const method: ChangeMethod = input.changed ? "cbt" : input.used ? "bitmap+hash" : "full+hash";
  let bytesToRead = countRuns(read) * chunkSize;
  const lastPartial = volumeSize % chunkSize;
  const lastRun = read[read.length - 1];
  if (lastPartial && lastRun && lastRun.first + lastRun.count === chunkCount)
    bytesToRead -= chunkSize - lastPartial;
  return { method, volumeSize, chunkSize, chunkCount, read, unused, carried, bytesToRead };
}

/** Byte length of chunk `index` (the last one may be short). */
export function chunkLength(plan: Pick<ReadPlan, "volumeSize" | "chunkSize">, index: number): number {
  return Math.min(plan.chunkSize, plan.volumeSize - index * plan.chunkSize);
}

/** The reads in order: chunk index, byte offset and length. */
export function* readOffsets(plan: ReadPlan): Generator<{ index: number; offset: number; length: number }> {
  for (const run of plan.read) {
    for (let index = run.first; index < run.first + run.count; index++) {
      yield { index, offset: index * plan.chunkSize, length: chunkLength(plan, index) };
    }
  }
}
