import { mkdir, open, readdir, utimes } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Prng, RandomBytes } from "./prng.js";

/**
 * The directory tree the benchmark image is built from: a deterministic mix of what real volumes
 * hold, so no tool wins by the data being trivially compressible or trivially random.
 * - text: word soup from a skewed vocabulary (logs, docs, source); compresses roughly 3:1
 * - random: incompressible (media, archives, encrypted data)
 * - sparse: database-like files, random 4 KiB pages between runs of zeros
 * - duplicate: byte copies of earlier files elsewhere in the tree (dedup opportunity)
 */
export type FileKind = "text" | "random" | "sparse" | "duplicate";

export interface PlannedFile {
  path: string;
  size: number;
  kind: FileKind;
  /** For a duplicate: index of the file it copies. */
  copyOf?: number;
}

export const KIND_WEIGHTS: Record<FileKind, number> = { text: 35, random: 30, sparse: 15, duplicate: 20 };
const TOP_DIRS: Record<FileKind, string[]> = {
  text: ["usr/share/doc", "var/log", "home/alice/src"],
  random: ["srv/media", "home/bob/photos"],
  sparse: ["var/lib/db"],
  duplicate: ["backup/copies", "home/carol/downloads"],
};
const EXT: Record<FileKind, string> = { text: "txt", random: "bin", sparse: "db", duplicate: "dup" };
/** Every file and directory gets this mtime, so mke2fs writes identical inodes on every run. */
export const FIXED_MTIME = 1_700_000_000;

const MIN_FILE = 4096;

/** Chooses files until `budget` bytes are planned. Pure: the same seed gives the same plan. */
export function planTree(seed: string, budget: number): PlannedFile[] {
  const prng = new Prng(`${seed}:tree`);
  const maxFile = Math.max(64 * 1024, Math.min(64 * 1024 * 1024, Math.floor(budget / 16)));
  const files: PlannedFile[] = [];
  const originals: number[] = [];
  let planned = 0;
  while (planned < budget) {
    let kind = prng.pick(KIND_WEIGHTS);
    if (kind === "duplicate" && originals.length === 0) kind = "text";
    const dirs = TOP_DIRS[kind];
    const dir = `${dirs[prng.int(0, dirs.length - 1)]}/${prng.int(0, 15).toString(16)}`;
    const path = `${dir}/f${files.length}.${EXT[kind]}`;
    if (kind === "duplicate") {
      const i = originals[prng.int(0, originals.length - 1)]!;
      const size = files[i]!.size;
      files.push({ path, size, kind, copyOf: i });
      planned += size;
      continue;
    }
    // Log-uniform sizes: many small files, most bytes in a few big ones, like real volumes.
    const logSize = Math.log(MIN_FILE) + prng.float() * (Math.log(maxFile) - Math.log(MIN_FILE));
    const size = Math.min(Math.round(Math.exp(logSize)), Math.max(MIN_FILE, budget - planned));
    originals.push(files.length);
    files.push({ path, size, kind });
    planned += size;
  }
  return files;
}

/** Produces a file's bytes in pieces; the same (seed, file) always yields the same bytes. */
export function* fileContent(seed: string, files: PlannedFile[], index: number): Generator<Buffer> {
  const file = files[index]!;
  if (file.kind === "duplicate") {
    yield* fileContent(seed, files, file.copyOf!);
    return;
  }
  const piece = 1024 * 1024;
  const source = contentSource(seed, file);
  for (let done = 0; done < file.size; done += piece) {
    yield source(Math.min(piece, file.size - done));
  }
}

function contentSource(seed: string, file: PlannedFile): (length: number) => Buffer {
  const name = file.path;
  switch (file.kind) {
    case "random": {
      const bytes = new RandomBytes(seed, name);
      return (n) => bytes.next(n);
    }
    case "text": {
      const text = new TextSource(seed, name);
      return (n) => text.next(n);
    }
    case "sparse": {
      const bytes = new RandomBytes(seed, name);
      const prng = new Prng(`${seed}:${name}`);
      return (n) => {
        const out = Buffer.alloc(n);
        // 4 KiB pages, about half of them zero.
        for (let at = 0; at < n; at += 4096) {
          if (prng.float() < 0.5) bytes.next(Math.min(4096, n - at)).copy(out, at);
        }
        return out;
      };
    }
    case "duplicate":
      throw new Error("duplicates copy their original");
  }
}

/** Word soup from a Zipf-like vocabulary: compressible but not trivially so. */
class TextSource {
  private readonly prng: Prng;
  private readonly words: Buffer[];
  private carry: Buffer = Buffer.alloc(0);

  constructor(seed: string, name: string) {
    this.words = vocabulary(seed);
    this.prng = new Prng(`${seed}:${name}`);
  }

  next(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    let at = this.carry.copy(out, 0);
    this.carry = this.carry.subarray(at);
    let lineWords = 0;
    while (at < length) {
      const u = this.prng.float();
      let word: Buffer = this.words[Math.floor(u * u * u * this.words.length)]!;
      if (++lineWords >= 12 && this.prng.float() < 0.3) {
        word = Buffer.concat([word.subarray(0, word.length - 1), NEWLINE]);
        lineWords = 0;
      }
      const copied = word.copy(out, at);
      at += copied;
      if (copied < word.length) this.carry = word.subarray(copied);
    }
    return out;
  }
}

const NEWLINE = Buffer.from("\n");
const vocabularies = new Map<string, Buffer[]>();

function vocabulary(seed: string): Buffer[] {
  let words = vocabularies.get(seed);
  if (!words) {
    const prng = new Prng(`${seed}:vocabulary`);
    const letters = "etaoinshrdlucmfwypvbgkjqxz";
    words = [];
    for (let i = 0; i < 4000; i++) {
      const len = prng.int(2, 10);
      let w = "";
      // Skewed letter choice, like English letter frequencies.
      for (let j = 0; j < len; j++) w += letters[Math.floor(prng.float() ** 2 * letters.length)];
      words.push(Buffer.from(`${w} `));
    }
    vocabularies.set(seed, words);
  }
  return words;
}

export interface TreeSummary {
  files: number;
  bytes: number;
  byKind: Record<FileKind, { files: number; bytes: number }>;
}

/** Writes the planned tree under `root` with fixed timestamps. */
export async function writeTree(root: string, seed: string, budget: number): Promise<TreeSummary> {
  const files = planTree(seed, budget);
  const summary: TreeSummary = {
    files: 0,
    bytes: 0,
    byKind: {
      text: { files: 0, bytes: 0 },
      random: { files: 0, bytes: 0 },
      sparse: { files: 0, bytes: 0 },
      duplicate: { files: 0, bytes: 0 },
    },
  };
  for (let i = 0; i < files.length; i++) {
    const file = files[i]!;
    const path = join(root, file.path);
    await mkdir(dirname(path), { recursive: true });
    const handle = await open(path, "w");
    try {
      for (const piece of fileContent(seed, files, i)) await handle.write(piece);
    } finally {
      await handle.close();
    }
    await utimes(path, FIXED_MTIME, FIXED_MTIME);
    summary.files += 1;
    summary.bytes += file.size;
    summary.byKind[file.kind].files += 1;
    summary.byKind[file.kind].bytes += file.size;
  }
  await fixDirectoryTimes(root);
  return summary;
}

/** Directories' mtimes change as files are added, so set them last, children first. */
async function fixDirectoryTimes(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await fixDirectoryTimes(join(dir, entry.name));
  }
  await utimes(dir, FIXED_MTIME, FIXED_MTIME);
}
