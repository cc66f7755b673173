import { ID_BYTES, idToHex, isZeroId } from "./ids.js";
import { entryCount, geometry } from "./index-tree.js";
import type { RestorePoint } from "./records.js";
import type { Repository } from "./repository.js";

/**
 * Walks the index tree under a root, calling `onNode` for every node (before reading it) and
 * `onChunk` for every non-zero chunk ID. `onNode` returning false skips the subtree (already seen).
 * Node read failures go to `onNodeError` (the subtree is skipped) or, without it, are thrown.
 */
export async function walkTree(
  repo: Repository,
  point: Pick<RestorePoint, "volumeSize" | "chunkSize" | "fanout" | "root">,
  visit: {
    onNode?: (hex: string, level: number) => boolean;
    onChunk: (hex: string, chunkIndex: number) => void;
    onNodeError?: (hex: string, err: unknown) => void;
  },
): Promise<void> {
  const g = geometry(point.volumeSize, point.chunkSize, point.fanout);
  const walk = async (id: Buffer, level: number, index: number): Promise<void> => {
    if (isZeroId(id)) return;
    const hex = idToHex(id);
    if (visit.onNode && !visit.onNode(hex, level)) return;
    let entries: Buffer;
    try {
      entries = await repo.readNode(id, level, entryCount(g, level, index));
    } catch (err) {
      if (!visit.onNodeError) throw err;
      visit.onNodeError(hex, err);
      return;
    }
    const n = entries.length / ID_BYTES;
    const children: Promise<void>[] = [];
    for (let j = 0; j < n; j++) {
      const child = entries.subarray(j * ID_BYTES, (j + 1) * ID_BYTES);
      if (level === 0) {
        if (!isZeroId(child)) visit.onChunk(idToHex(child), index * g.fanout + j);
      } else children.push(walk(Buffer.from(child), level - 1, index * g.fanout + j));
      // Bound concurrency per node level: a node's children are read together, not the whole tree.
      if (children.length >= 16) await Promise.all(children.splice(0));
    }
    await Promise.all(children);
  };
  if (g.chunkCount > 0) await walk(Buffer.from(point.root, "hex"), g.rootLevel, 0);
}
