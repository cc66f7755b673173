import { corrupt } from "../../errors.js";
import { splitPath } from "../path.js";
import type { FileStat, FileSystemReader, WalkOptions } from "../types.js";

export interface ArchiveEntry {
  /** Path inside the archive, relative, `/`-separated, directories without the trailing slash. */
  name: string;
  stat: FileStat;
  /** For the second and later paths of a hard-linked file: the archive name of the first. */
  hardLinkTo?: string;
}

/**
 * The entries of an archive of `path`: the directory itself under its own name (nothing for "/"),
 * then its tree depth-first; a file stands alone under its name. Files that are hard links of one
 * already archived become links to it (tar) so that identity and space survive.
 */
export async function* archiveEntries(
  fs: FileSystemReader,
  path: string,
  options: WalkOptions = {},
): AsyncGenerator<ArchiveEntry> {
  const isRoot = splitPath(path).length === 0;
  // Archive names start at the selected directory's own name, so extracting makes one folder.
  let strip = 1;
  const firstPath = new Map<number, string>();
  for await (const stat of fs.walk(path, options)) {
    if (stat.depth === 0) {
      strip = stat.path.lastIndexOf("/") + 1;
      if (isRoot) continue;
    }
    const name = stat.path.slice(strip);
    if (!name) throw corrupt(`empty archive name for ${stat.path}`);
    const entry: ArchiveEntry = { name, stat };
    if (stat.type === "file" && stat.links > 1) {
      const first = firstPath.get(stat.id);
      if (first !== undefined) entry.hardLinkTo = first;
      else firstPath.set(stat.id, name);
    }
    yield entry;
  }
}

/** Reads a file's content checking that it delivers exactly the size the archive header promised. */
export async function* contentOf(fs: FileSystemReader, stat: FileStat): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const piece of fs.read(stat.path)) {
    total += piece.length;
    if (total > stat.size) break;
    yield piece;
  }
  if (total !== stat.size) throw corrupt(`${stat.path}: read ${total} bytes of ${stat.size}`);
}
