import { ID_BYTES, isZeroId, ZERO_ID } from "./ids.js";
import { entryCount, type Geometry, geometry } from "./index-tree.js";
import { Lru } from "./lru.js";
import type { RestorePoint } from "./records.js";
import type { Repository } from "./repository.js";

/** Index nodes kept decoded per navigator: 256 × 8 KiB = 2 MiB, a whole level-1 node's children. */
const NODE_CACHE = 256;

/**
 * Navigates one restore point's index tree: the ID at any (level, index), the chunk ID of any chunk.
 * Nodes are cached; concurrent calls are safe (a node may be fetched twice, never wrongly).
 */
export class TreeReader {
  readonly geometry: Geometry;
  private readonly root: Buffer;
  private readonly cache = new Lru<string, Promise<Buffer>>(NODE_CACHE);

  constructor(
    private readonly repo: Repository,
    readonly point: RestorePoint,
  ) {
    this.geometry = geometry(point.volumeSize, point.chunkSize, point.fanout);
    this.root = Buffer.from(point.root, "hex");
  }

  /** ID of node (level, index); ZERO_ID for an all-zero subtree. */
  async nodeId(level: number, index: number): Promise<Buffer> {
    const g = this.geometry;
    if (level === g.rootLevel) return index === 0 ? this.root : ZERO_ID;
    const parent = await this.entries(level + 1, Math.floor(index / g.fanout));
    const at = (index % g.fanout) * ID_BYTES;
    return parent ? Buffer.from(parent.subarray(at, at + ID_BYTES)) : ZERO_ID;
  }

  /** Entries of node (level, index), or null when the subtree is all zero. */
  async entries(level: number, index: number): Promise<Buffer | null> {
    const key = `${level}:${index}`;
    let p = this.cache.get(key);
    if (!p) {
      p = (async () => {
        const id = await this.nodeId(level, index);
        if (isZeroId(id)) return ZERO_NODE;
        return this.repo.readNode(id, level, entryCount(this.geometry, level, index));
      })();
      this.cache.set(key, p);
      p.catch(() => this.cache.delete(key)); // a failed read is retried, not remembered
    }
    const got = await p;
    return got === ZERO_NODE ? null : got;
  }

  /** Chunk ID of chunk i (ZERO_ID for a zero chunk). */
  async chunkId(i: number): Promise<Buffer> {
    const leaf = await this.entries(0, Math.floor(i / this.geometry.fanout));
    if (!leaf) return ZERO_ID;
    const at = (i % this.geometry.fanout) * ID_BYTES;
    return Buffer.from(leaf.subarray(at, at + ID_BYTES));
  }
}

const ZERO_NODE = Buffer.alloc(0);
