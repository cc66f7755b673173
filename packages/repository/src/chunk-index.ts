import type { Backend } from "./backend.js";
import { type ChunkId, idToHex } from "./ids.js";
import { LocalBackend } from "./local-backend.js";

/**
 * "Which of these chunk IDs exist?", in batches (spec, "Chunk index"). An index is a filter in
 * front of the chunk files, which are the truth: ingest confirms every hit by touching the file.
 * Implementations must allow concurrent calls.
 */
export interface ChunkIndex {
  /** For each ID, whether the repository holds it (answer i belongs to ids[i]). */
  has(ids: readonly ChunkId[]): Promise<boolean[]>;
  /** The chunks were just stored durably. */
  added(ids: readonly ChunkId[]): Promise<void>;
  /** GC removed the chunks. */
  removed(ids: readonly ChunkId[]): Promise<void>;
}

export function chunkKey(id: ChunkId | string): string {
  const hex = typeof id === "string" ? id : idToHex(id);
  return `chunks/${hex.slice(0, 2)}/${hex}`;
}

/**
 * Confirms an existing chunk for an ingest: touching it makes it young, so GC keeps it (spec, "Why
 * GC never deletes a chunk an ingest needs"). A chunk GC just moved to the trash is moved back.
 * False if the chunk is not there. What every index hit goes through before an ingest relies on it.
 */
export async function claimChunk(backend: Backend, id: ChunkId): Promise<boolean> {
  const key = chunkKey(id);
  // Local files: utimes(2) on this thread; a thread-pool round trip per dedup hit cost more.
  if (backend instanceof LocalBackend ? backend.touchSync(key) : await backend.touch(key)) return true;
  if (await backend.rename(`trash/${idToHex(id)}`, key)) return backend.touch(key);
  return false;
}

/** Stats requested at once, so a batch of lookups uses the I/O thread pool without flooding it. */
const STAT_CONCURRENCY = 16;

/** The offline index: asks the backend itself (one stat per ID). Nothing to maintain. */
export class StoreChunkIndex implements ChunkIndex {
  constructor(private readonly backend: Backend) {}

  async has(ids: readonly ChunkId[]): Promise<boolean[]> {
    // Local files: a synchronous stat that reports absence without building an exception (most
    // lookups of a first backup miss) costs a few microseconds instead of a thread-pool round trip.
    if (this.backend instanceof LocalBackend) {
      const b = this.backend;
      return ids.map((id) => b.existsSync(chunkKey(id)));
    }
    const out = new Array<boolean>(ids.length).fill(false);
    let next = 0;
    const worker = async () => {
      while (next < ids.length) {
        const i = next++;
        out[i] = (await this.backend.stat(chunkKey(ids[i]!))) !== null;
      }
    };
    await Promise.all(Array.from({ length: Math.min(STAT_CONCURRENCY, ids.length) }, worker));
    return out;
  }

  async added(): Promise<void> {}

  async removed(): Promise<void> {}
}
