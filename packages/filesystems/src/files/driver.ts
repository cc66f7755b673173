import type { FileStat, FilesystemKind } from "./types.js";

/** What a filesystem knows about a file before anyone has named it by path. */
export type NodeInfo = Omit<FileStat, "name" | "path">;

export interface DirectoryEntry<N extends NodeInfo> {
  name: string;
  node: N;
}

/**
 * The per-filesystem part of a reader. `FileSystemReader` (reader.ts) adds paths, walking and
 * searching on top, identically for every filesystem.
 */
export interface Driver<N extends NodeInfo> {
  readonly kind: FilesystemKind;
  readonly label: string;
  /** Windows filesystems match names without regard to case. */
  readonly caseInsensitive: boolean;
  root(): Promise<N>;
  /** Entries of a directory node, without "." and "..". */
  list(dir: N): Promise<DirectoryEntry<N>[]>;
  /**
   * One entry by name, loading only that entry's node (path lookups in a directory of thousands of
   * files must not read thousands of inodes or MFT records).
   */
  lookup(dir: N, name: string): Promise<DirectoryEntry<N> | undefined>;
  /** Bytes [start, end) of a regular file, in pieces of at most READ_PIECE_BYTES. */
  content(file: N, start: number, end: number): AsyncIterable<Buffer>;
  linkTarget(link: N): Promise<string>;
}

/**
 * Largest buffer a content read yields: bounded memory per open file, and small enough that a
 * repository-backed source fetches only the chunks around it.
 */
export const READ_PIECE_BYTES = 1024 * 1024;

/** One reusable page of zeros for holes; copied per piece so consumers may keep or mutate it. */
export function zeros(length: number): Buffer {
  return Buffer.alloc(length);
}

/** The entry called `name`: the exact name first, then (case-insensitive filesystems) any case. */
export function pickName<T extends { name: string }>(
  entries: T[],
  name: string,
  caseInsensitive: boolean,
): T | undefined {
  const exact = entries.find((e) => e.name === name);
  if (exact || !caseInsensitive) return exact;
  const folded = name.toLowerCase();
  return entries.find((e) => e.name.toLowerCase() === folded);
}
