import type { Readable } from "node:stream";

export type FileType = "file" | "directory" | "symlink" | "other";
export type FilesystemKind = "ext4" | "ntfs" | "vfat";

/** What `stat` and `readdir` report for one file, whatever the filesystem. */
export interface FileStat {
  /** Last path component ("" for the root). */
  name: string;
  /** Absolute `/`-separated path inside the filesystem. */
  path: string;
  type: FileType;
  /** Bytes of content (the logical size: holes included). Directories report 0 except on ext4. */
  size: number;
  mtime: Date;
  atime?: Date;
  /** ext4: inode change time; NTFS: MFT record change time; FAT: absent. */
  ctime?: Date;
  /** NTFS and FAT: creation time. */
  birthtime?: Date;
  /**
   * POSIX permission and type bits. ext4: i_mode as stored. NTFS and FAT have none, so directories
   * read 0o40755, read-only files 0o100444, other files 0o100644 and reparse-point links 0o120777.
   */
  mode: number;
  /** NTFS FILE_ATTRIBUTE_* or FAT attribute byte; absent on ext4. */
  attributes?: number;
  /**
   * Identity inside this filesystem: ext4 inode number, NTFS MFT record number, FAT byte offset of
   * the directory entry (the root is 0). Two paths with the same id are hard links.
   */
  id: number;
  /** Hard-link count (1 on FAT). */
  links: number;
  uid?: number;
  gid?: number;
}

export interface ReadOptions {
  /** First byte (default 0). */
  start?: number;
  /** Byte after the last one (default: the file size). */
  end?: number;
}

export interface WalkOptions {
  /** Directories nested deeper than this below the start are not entered (default 64). */
  maxDepth?: number;
}

export interface WalkEntry extends FileStat {
  /** 0 for the start path, 1 for its entries, ... */
  depth: number;
}

export interface FindOptions {
  /** Directory to search from (default "/"). */
  under?: string;
  /** Match names without regard to case (default true). */
  caseInsensitive?: boolean;
  /** Stop after this many matches (default 1000). */
  limit?: number;
  maxDepth?: number;
}

export interface FindResult {
  matches: FileStat[];
  /** True when the search stopped at `limit` with more of the tree left to search. */
  truncated: boolean;
}

/** A read-only view of one filesystem inside an image; every method reads only what it needs. */
export interface FileSystemReader {
  readonly kind: FilesystemKind;
  /** Volume label when the filesystem has one. */
  readonly label: string;
  stat(path: string): Promise<FileStat>;
  /** The entries of a directory, without "." and "..", in on-disk order. */
  readdir(path: string): Promise<FileStat[]>;
  readlink(path: string): Promise<string>;
  /** File content as Buffers of bounded size; holes are produced as zeros without reading. */
  read(path: string, options?: ReadOptions): AsyncIterable<Buffer>;
  /** `read` as a Node stream. */
  open(path: string, options?: ReadOptions): Readable;
  /** Depth-first: a directory, then its entries (each directory followed by its own subtree). */
  walk(path: string, options?: WalkOptions): AsyncIterable<WalkEntry>;
  /** Names matching a glob (`*`, `?`, `[...]`) or, without glob characters, containing the pattern. */
  find(pattern: string, options?: FindOptions): Promise<FindResult>;
}
