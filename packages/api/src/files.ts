// File-level restore: browse the filesystems inside a restore point and download files or whole
// directories, read straight from the repository (no mount, no agent). docs/file-restore.md.
import { z } from "zod";
import { timestampSchema } from "./common.js";

/** Longest path accepted; deeper trees exist but a request this long is a mistake or an attack. */
export const MAX_FILE_PATH_LENGTH = 4096;
/** Most matches one search returns (the answer says when there were more). */
export const MAX_FIND_RESULTS = 1000;

const pathSchema = z.string().min(1).max(MAX_FILE_PATH_LENGTH).startsWith("/");

/** Which filesystem of the restore point: a partition number (0 = no partition table). */
const partitionSchema = z.coerce.number().int().min(0).max(1024).optional();

export const volumeLayoutSchema = z.object({
  /** "mbr" / "gpt", or null when the filesystem starts at byte 0 of the volume. */
  table: z.string().nullable(),
  partitions: z.array(
    z.object({
      number: z.number().int(),
      offset: z.number(),
      length: z.number(),
      /** Partition type as the table names it (GPT type GUID, MBR type byte, or "none"). */
      type: z.string(),
      filesystem: z.enum(["ext4", "ntfs", "vfat", "unknown"]),
      /** Partition name (GPT) when there is one. */
      name: z.string().nullable(),
    }),
  ),
});
export type VolumeLayout = z.infer<typeof volumeLayoutSchema>;

export const fileEntrySchema = z.object({
  name: z.string(),
  path: z.string(),
  type: z.enum(["file", "directory", "symlink", "other"]),
  size: z.number(),
  mtime: timestampSchema,
  /** POSIX type and permission bits (synthesised on NTFS and FAT, see docs/file-restore.md). */
  mode: z.number().int(),
  /** Inode / MFT record / directory-entry identity: equal ids are hard links. */
  id: z.number(),
  links: z.number().int(),
  uid: z.number().int().optional(),
  gid: z.number().int().optional(),
  /** NTFS or FAT attribute bits. */
  attributes: z.number().int().optional(),
});
export type FileEntry = z.infer<typeof fileEntrySchema>;

export const fileQuerySchema = z.object({
  path: pathSchema.default("/"),
  partition: partitionSchema,
});

/** A path's own entry, plus its children when it is a directory and its target when a symlink. */
export const fileListingSchema = z.object({
  partition: z.number().int(),
  filesystem: z.enum(["ext4", "ntfs", "vfat"]),
  entry: fileEntrySchema,
  entries: z.array(fileEntrySchema).nullable(),
  linkTarget: z.string().nullable(),
});
export type FileListing = z.infer<typeof fileListingSchema>;

export const archiveQuerySchema = fileQuerySchema.extend({
  format: z.enum(["tar", "zip"]).default("tar"),
});

export const fileSearchQuerySchema = z.object({
  /** A glob (`*`, `?`, `[...]`) or, without those, a part of the name. */
  pattern: z.string().min(1).max(255),
  under: pathSchema.default("/"),
  partition: partitionSchema,
  caseSensitive: z.stringbool().default(false),
  limit: z.coerce.number().int().min(1).max(MAX_FIND_RESULTS).default(200),
});

export const fileSearchResultSchema = z.object({
  partition: z.number().int(),
  matches: z.array(fileEntrySchema),
  /** True when the search stopped at `limit` with more of the tree left. */
  truncated: z.boolean(),
});
export type FileSearchResult = z.infer<typeof fileSearchResultSchema>;
