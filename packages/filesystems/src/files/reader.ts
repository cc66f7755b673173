import { Readable } from "node:stream";
import { BulwarkError } from "@bulwark/errors";
import { unsupported } from "../errors.js";
import { type DirectoryEntry, type Driver, type NodeInfo, pickName } from "./driver.js";
import { nameMatcher } from "./glob.js";
import { joinPath, splitPath } from "./path.js";
import type {
  FileStat,
  FileSystemReader,
  FindOptions,
  FindResult,
  ReadOptions,
  WalkEntry,
  WalkOptions,
} from "./types.js";

/** Deep enough for any real tree (Linux paths stop at 4096 bytes, i.e. ~2000 levels of 1-char names). */
export const DEFAULT_WALK_DEPTH = 64;
export const DEFAULT_FIND_LIMIT = 1000;
/**
 * Directory listings kept decoded: resolving /a/b/c lists /, /a and /a/b, and a help-desk session
 * browses the same few directories repeatedly; with a repository behind the source each listing
 * costs chunk fetches.
 */
const LISTING_CACHE_SIZE = 64;
/** A hard ceiling for callers' maxDepth: recursion is iterative, but a deeper tree is surely hostile. */
const MAX_WALK_DEPTH = 4096;

export function notFound(path: string): BulwarkError {
  return new BulwarkError("BULWARK_FS_NOT_FOUND", `no such file or directory: ${path}`, {
    details: { path },
  });
}

function notADirectory(path: string): BulwarkError {
  return new BulwarkError("BULWARK_FS_NOT_A_DIRECTORY", `not a directory: ${path}`, { details: { path } });
}

export function loop(message: string, details?: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_FS_LOOP", message, details ? { details } : undefined);
}

/** The public view of a node: its NodeInfo fields (driver-private fields dropped) plus name and path. */
function toStat(node: NodeInfo, name: string, path: string): FileStat {
  const stat: FileStat = {
    name,
    path,
    type: node.type,
    size: node.size,
    mtime: node.mtime,
    mode: node.mode,
    id: node.id,
    links: node.links,
  };
  if (node.atime !== undefined) stat.atime = node.atime;
  if (node.ctime !== undefined) stat.ctime = node.ctime;
  if (node.birthtime !== undefined) stat.birthtime = node.birthtime;
  if (node.attributes !== undefined) stat.attributes = node.attributes;
  if (node.uid !== undefined) stat.uid = node.uid;
  if (node.gid !== undefined) stat.gid = node.gid;
  return stat;
}

/** Paths, walking and searching over any filesystem driver. */
export class DriverReader<N extends NodeInfo> implements FileSystemReader {
  private readonly listings = new Map<number, DirectoryEntry<N>[]>();

  constructor(private readonly driver: Driver<N>) {}

  private async list(dir: N): Promise<DirectoryEntry<N>[]> {
    const cached = this.listings.get(dir.id);
    if (cached) {
      // Refresh its place: the map's insertion order is the eviction order.
      this.listings.delete(dir.id);
      this.listings.set(dir.id, cached);
      return cached;
    }
    const entries = await this.driver.list(dir);
    if (this.listings.size >= LISTING_CACHE_SIZE) this.listings.delete(this.listings.keys().next().value!);
    this.listings.set(dir.id, entries);
    return entries;
  }

  get kind() {
    return this.driver.kind;
  }

  get label() {
    return this.driver.label;
  }

  /** Resolves a path without following symlinks (a link inside a path is "not a directory"). */
  private async resolve(path: string): Promise<{ node: N; name: string; path: string }> {
    const parts = splitPath(path);
    let node = await this.driver.root();
    let at = "/";
    for (const part of parts) {
      if (node.type !== "directory") throw notADirectory(at);
      // A cached listing answers at once; otherwise only the matching entry's node is loaded.
      const cached = this.listings.get(node.id);
      const found = cached
        ? pickName(cached, part, this.driver.caseInsensitive)
        : await this.driver.lookup(node, part);
      if (!found) throw notFound(joinPath(at, part));
      node = found.node;
      at = joinPath(at, found.name);
    }
    return { node, name: parts.length ? at.slice(at.lastIndexOf("/") + 1) : "", path: at };
  }

  async stat(path: string): Promise<FileStat> {
    const { node, name, path: resolved } = await this.resolve(path);
    return toStat(node, name, resolved);
  }

  async readdir(path: string): Promise<FileStat[]> {
    const { node, path: dir } = await this.resolve(path);
    if (node.type !== "directory") throw notADirectory(dir);
    return (await this.list(node)).map((e) => toStat(e.node, e.name, joinPath(dir, e.name)));
  }

  async readlink(path: string): Promise<string> {
    const { node, path: resolved } = await this.resolve(path);
    if (node.type !== "symlink") {
      throw new BulwarkError("BULWARK_FS_NOT_A_SYMLINK", `not a symbolic link: ${resolved}`, {
        details: { path: resolved },
      });
    }
    return this.driver.linkTarget(node);
  }

  async *read(path: string, options: ReadOptions = {}): AsyncIterable<Buffer> {
    const { node, path: resolved } = await this.resolve(path);
    yield* this.contentOf(node, resolved, options);
  }

  /** Content of an already-resolved file (walkers use it to avoid resolving the path again). */
  async *contentOf(node: NodeInfo, path: string, options: ReadOptions = {}): AsyncIterable<Buffer> {
    if (node.type === "directory") {
      throw new BulwarkError("BULWARK_FS_IS_A_DIRECTORY", `is a directory: ${path}`, { details: { path } });
    }
    if (node.type !== "file") throw unsupported(`not a regular file: ${path}`, { path, type: node.type });
    const start = options.start ?? 0;
    const end = options.end ?? node.size;
    if (
      !Number.isSafeInteger(start) ||
      !Number.isSafeInteger(end) ||
      start < 0 ||
      end < start ||
      end > node.size
    ) {
      throw new BulwarkError(
        "BULWARK_FS_OUT_OF_RANGE",
        `range ${start}..${end} is outside the ${node.size}-byte file`,
        {
          details: { path, start, end, size: node.size },
        },
      );
    }
    if (end === start) return;
    yield* this.driver.content(node as N, start, end);
  }

  open(path: string, options?: ReadOptions): Readable {
    return Readable.from(this.read(path, options), { objectMode: false });
  }

  walk(path: string, options: WalkOptions = {}): AsyncIterable<WalkEntry> {
    return this.walkNodes(path, options);
  }

  /**
   * Depth-first, iteratively (an explicit stack, so depth costs no call stack). A directory whose
   * id is already on the way down or was already walked is a loop: directories cannot be hard links.
   */
  async *walkNodes(path: string, options: WalkOptions = {}): AsyncGenerator<WalkEntry & { node: N }> {
    const maxDepth = Math.min(options.maxDepth ?? DEFAULT_WALK_DEPTH, MAX_WALK_DEPTH);
    const start = await this.resolve(path);
    const visited = new Set<number>();
    type Frame = { node: N; name: string; path: string; depth: number };
    const stack: Frame[] = [{ ...start, depth: 0 }];
    while (stack.length > 0) {
      const frame = stack.pop()!;
      yield { ...toStat(frame.node, frame.name, frame.path), depth: frame.depth, node: frame.node };
      if (frame.node.type !== "directory" || frame.depth >= maxDepth) continue;
      if (visited.has(frame.node.id)) {
        throw loop(`directory ${frame.path} (id ${frame.node.id}) appears twice in the tree`, {
          path: frame.path,
          id: frame.node.id,
        });
      }
      visited.add(frame.node.id);
      const entries = await this.list(frame.node);
      for (let i = entries.length - 1; i >= 0; i--) {
        const e = entries[i]!;
        stack.push({
          node: e.node,
          name: e.name,
          path: joinPath(frame.path, e.name),
          depth: frame.depth + 1,
        });
      }
    }
  }

  async find(pattern: string, options: FindOptions = {}): Promise<FindResult> {
    const matches = nameMatcher(pattern, options.caseInsensitive ?? true);
    const limit = options.limit ?? DEFAULT_FIND_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new BulwarkError("BULWARK_FS_INVALID_PATH", "limit must be ≥ 1");
    const found: FileStat[] = [];
    const walkOptions = options.maxDepth === undefined ? {} : { maxDepth: options.maxDepth };
    for await (const entry of this.walkNodes(options.under ?? "/", walkOptions)) {
      if (entry.depth === 0 || !matches(entry.name)) continue;
      if (found.length === limit) return { matches: found, truncated: true };
      const { node: _node, depth: _depth, ...stat } = entry;
      found.push(stat);
    }
    return { matches: found, truncated: false };
  }
}
