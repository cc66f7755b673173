// File-level restore (docs/file-restore.md): `files volume` shows a restore point's partitions,
// `files ls` and `files find` browse its filesystems, `files get` downloads one file, or a directory
// as a tar or zip archive. Downloads stream to a temporary file next to the target and are renamed
// into place only when every byte arrived, so an interrupted download never looks complete.

import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { link, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  type FileEntry,
  fileListingSchema,
  fileSearchResultSchema,
  MAX_FIND_RESULTS,
  volumeLayoutSchema,
} from "@bulwark/api";
import { BulwarkError } from "@bulwark/errors";
import type { ApiClient, QueryValue } from "../api-client.js";
import { defineCommand, type OptionSpec } from "../command.js";
import { formatBytes, formatLocalTime, table } from "../format.js";
import { API, enumValue, usage } from "./common.js";

export const ARCHIVE_FORMATS = ["tar", "zip"] as const;

/** The API's bound on partition numbers (packages/api/src/files.ts). */
const MAX_PARTITION = 1024;

/** Symlink targets are looked up this many at a time: enough to be quick, few enough not to flood the server. */
const LINK_LOOKUP_CONCURRENCY = 8;

const partitionOption = {
  partition: {
    type: "string",
    valueName: "n",
    description:
      "which filesystem: partition number (0 = the volume has no partition table; default: the only or first one)",
  },
} as const satisfies Record<string, OptionSpec>;

export function parsePartition(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > MAX_PARTITION) {
    throw usage(`--partition ${JSON.stringify(value)}: expected a partition number 0-${MAX_PARTITION}`);
  }
  return n;
}

/** Paths inside the restore point are absolute; "etc/hosts" is taken as "/etc/hosts". */
function absolute(path: string | undefined): string {
  if (path === undefined || path === "") return "/";
  return path.startsWith("/") ? path : `/${path}`;
}

function backupPath(id: string, sub: string): string {
  return `${API}/backups/${encodeURIComponent(id)}${sub}`;
}

function listing(api: ApiClient, id: string, path: string, partition: number | undefined) {
  return api.get(backupPath(id, "/files"), fileListingSchema, { path, partition });
}

function typeLabel(e: FileEntry): string {
  return e.type === "directory" ? "dir" : e.type === "symlink" ? "link" : e.type;
}

function entryTable(rows: readonly { entry: FileEntry; name: string }[]): string {
  return table(
    [
      { header: "TYPE", value: (r) => typeLabel(r.entry) },
      { header: "SIZE", value: (r) => formatBytes(r.entry.size), align: "right" },
      { header: "MODIFIED", value: (r) => formatLocalTime(new Date(r.entry.mtime)) },
      { header: "NAME", value: (r) => r.name },
    ],
    rows,
  );
}

/** Runs `fn` over `items` with at most `limit` calls in flight, keeping the order of the results. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export const filesVolumeCommand = defineCommand({
  path: ["files", "volume"],
  summary: "the partition table and filesystems of a restore point",
  args: ["restorePoint"],
  options: {},
  examples: ["bulwark files volume 6e2a…"],
  async run(ctx, { args }) {
    const layout = await ctx.api().get(backupPath(args.restorePoint, "/volume"), volumeLayoutSchema);
    const text = table(
      [
        { header: "PART", value: (p) => String(p.number), align: "right" },
        { header: "OFFSET", value: (p) => String(p.offset), align: "right" },
        { header: "SIZE", value: (p) => formatBytes(p.length), align: "right" },
        { header: "FILESYSTEM", value: (p) => p.filesystem },
        { header: "TYPE", value: (p) => p.type },
        { header: "NAME", value: (p) => p.name ?? "-" },
      ],
      layout.partitions,
    );
    return { data: layout, text: `partition table: ${layout.table ?? "none"}\n${text}` };
  },
});

export const filesLsCommand = defineCommand({
  path: ["files", "ls"],
  summary: "list a directory (or show one entry) inside a restore point",
  args: ["restorePoint", "path?"],
  options: partitionOption,
  examples: ["bulwark files ls 6e2a… /etc", "bulwark files ls 6e2a… / --partition 2 --json"],
  async run(ctx, { args, options }) {
    const api = ctx.api();
    const partition = parsePartition(options.partition);
    const res = await listing(api, args.restorePoint, absolute(args.path), partition);
    let rows: { entry: FileEntry; name: string }[];
    if (res.entries === null) {
      const target = res.linkTarget === null ? "" : ` -> ${res.linkTarget}`;
      rows = [{ entry: res.entry, name: `${res.entry.path}${target}` }];
    } else {
      // A directory listing carries no link targets: ask for each symlink's own entry.
      rows = await mapLimited(res.entries, LINK_LOOKUP_CONCURRENCY, async (entry) => {
        if (entry.type !== "symlink") return { entry, name: entry.name };
        const link = await listing(api, args.restorePoint, entry.path, res.partition);
        return { entry, name: `${entry.name} -> ${link.linkTarget ?? "?"}` };
      });
    }
    return { data: res, text: entryTable(rows) };
  },
});

export const filesFindCommand = defineCommand({
  path: ["files", "find"],
  summary: "find files by name (glob such as *.conf, or a part of the name) inside a restore point",
  args: ["restorePoint", "pattern"],
  options: {
    under: { type: "string", valueName: "path", description: "search only below this directory (default /)" },
    "case-sensitive": { type: "boolean", description: "match upper and lower case exactly" },
    limit: {
      type: "string",
      valueName: "n",
      description: `at most this many matches (1-${MAX_FIND_RESULTS}, default 200)`,
    },
    ...partitionOption,
  },
  examples: ["bulwark files find 6e2a… '*.conf' --under /etc", "bulwark files find 6e2a… passwd"],
  async run(ctx, { args, options }) {
    let limit: number | undefined;
    if (options.limit !== undefined) {
      limit = Number(options.limit);
      if (!/^\d+$/.test(options.limit) || limit < 1 || limit > MAX_FIND_RESULTS)
        throw usage(`--limit ${JSON.stringify(options.limit)}: expected 1 to ${MAX_FIND_RESULTS}`);
    }
    const query: Record<string, QueryValue> = {
      pattern: args.pattern,
      under: options.under === undefined ? undefined : absolute(options.under),
      partition: parsePartition(options.partition),
      caseSensitive: options["case-sensitive"] ? "true" : undefined,
      limit,
    };
    const res = await ctx
      .api()
      .get(backupPath(args.restorePoint, "/files/search"), fileSearchResultSchema, query);
    const rows = res.matches.map((entry) => ({ entry, name: entry.path }));
    const more = res.truncated
      ? `\n(stopped at ${res.matches.length} matches: narrow it with --under, or raise --limit)`
      : "";
    return { data: res, text: `${entryTable(rows)}${more}` };
  },
});

/** A name from the restore point used as a local file name: only a plain last component will do. */
function safeLocalName(name: string): string | undefined {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0"))
    return undefined;
  return name;
}

/**
 * Without a byte for this long a download is taken as hung (a dead connection that never closed):
 * the server streams as it reads, and even a slow repository answers well within it.
 */
export const DOWNLOAD_IDLE_TIMEOUT_MS = 120_000;

export class DownloadStalledError extends Error {
  constructor(idleMs: number) {
    super(`no data for ${idleMs / 1000} s`);
    this.name = "DownloadStalledError";
  }
}

/**
 * Counts the bytes that pass through (checked against Content-Length at the end) and fails the
 * pipeline when nothing arrives for `idleMs`.
 */
export function downloadMeter(idleMs = DOWNLOAD_IDLE_TIMEOUT_MS): Transform & { bytes: number } {
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => meter.destroy(new DownloadStalledError(idleMs)), idleMs);
  };
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      meter.bytes += chunk.length;
      arm();
      done(null, chunk);
    },
    flush(done) {
      clearTimeout(timer);
      done();
    },
    destroy(err, done) {
      clearTimeout(timer);
      done(err);
    },
  }) as Transform & { bytes: number };
  meter.bytes = 0;
  arm();
  return meter;
}

function expectedLength(headers: Headers): number | undefined {
  const value = headers.get("content-length");
  if (value === null || !/^\d+$/.test(value)) return undefined;
  return Number(value);
}

function shortDownload(what: string, got: number, expected: number): BulwarkError {
  return new BulwarkError(
    "BULWARK_CLI_BAD_RESPONSE",
    `${what}: the server announced ${expected} bytes but sent ${got}; the download is incomplete`,
  );
}

/**
 * Streams `body` into `out` by way of a temporary file in the same directory (same filesystem, so
 * the final rename is atomic). Without `force`, the file is put in place with link(2), which fails
 * if `out` appeared meanwhile instead of replacing it.
 */
async function saveAtomically(
  body: ReadableStream<Uint8Array>,
  headers: Headers,
  out: string,
  force: boolean,
  what: string,
): Promise<number> {
  const tmp = join(dirname(out), `.${basename(out)}.bulwark-partial-${randomBytes(6).toString("hex")}`);
  const counter = downloadMeter();
  try {
    try {
      await pipeline(
        Readable.fromWeb(body as never),
        counter,
        createWriteStream(tmp, { flags: "wx", mode: 0o600 }),
      );
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // A local file error (open, write: ENOSPC, EACCES) carries its system call; a broken
      // connection does not.
      if (e.syscall !== undefined)
        throw new BulwarkError("BULWARK_CLI_FILE", `cannot write ${out}: ${e.message}`);
      throw new BulwarkError(
        "BULWARK_CLI_UNREACHABLE",
        `${what}: the download broke off after ${counter.bytes} bytes: ${e.message}`,
      );
    }
    const expected = expectedLength(headers);
    if (expected !== undefined && counter.bytes !== expected)
      throw shortDownload(what, counter.bytes, expected);
    // On disk before it gets its real name: a crash right after must not leave a short file under it.
    const fh = await open(tmp, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      if (force) await rename(tmp, out);
      else {
        await link(tmp, out);
        await unlink(tmp);
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.code === "EEXIST" ? "the file exists (use --force to replace it)" : e.message;
      throw new BulwarkError("BULWARK_CLI_FILE", `cannot write ${out}: ${why}`);
    }
    return counter.bytes;
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** `-o -`: the bytes go to stdout as they arrive; a short answer is still reported (exit code). */
async function streamToStdout(
  body: ReadableStream<Uint8Array>,
  headers: Headers,
  what: string,
): Promise<number> {
  const counter = downloadMeter();
  try {
    await pipeline(Readable.fromWeb(body as never), counter, process.stdout, { end: false });
  } catch (err) {
    throw new BulwarkError(
      "BULWARK_CLI_UNREACHABLE",
      `${what}: the download broke off after ${counter.bytes} bytes: ${(err as Error).message}`,
    );
  }
  const expected = expectedLength(headers);
  if (expected !== undefined && counter.bytes !== expected)
    throw shortDownload(what, counter.bytes, expected);
  return counter.bytes;
}

export const filesGetCommand = defineCommand({
  path: ["files", "get"],
  summary: "download a file, or a directory as a tar or zip archive, from a restore point",
  args: ["restorePoint", "path"],
  options: {
    out: {
      type: "string",
      short: "o",
      valueName: "file",
      description: "where to write it; - for stdout (default: its name in the current directory)",
    },
    format: {
      type: "string",
      // Not "tar|zip": a pipe in the value name would split the docs' Markdown table.
      valueName: "format",
      description: "archive format for a directory: tar (default) or zip",
    },
    force: { type: "boolean", description: "replace the output file if it exists" },
    ...partitionOption,
  },
  examples: [
    "bulwark files get 6e2a… /etc/hosts",
    "bulwark files get 6e2a… /home/ann --format zip -o ann.zip",
    "bulwark files get 6e2a… /var/log/syslog -o - | less",
  ],
  async run(ctx, { args, options }) {
    const partition = parsePartition(options.partition);
    const format = enumValue("--format", options.format, ARCHIVE_FORMATS);
    const api = ctx.api();
    const { entry, partition: resolved } = await listing(
      api,
      args.restorePoint,
      absolute(args.path),
      partition,
    );
    const isDirectory = entry.type === "directory";
    if (!isDirectory && format !== undefined)
      throw usage(`files get: --format is for directories; ${entry.path} is a ${entry.type}`);
    if (entry.type !== "file" && !isDirectory)
      throw usage(
        `files get: ${entry.path} is a ${entry.type}; only files and directories can be downloaded`,
      );

    const toStdout = options.out === "-";
    let out: string | undefined;
    if (!toStdout) {
      const defaultName = isDirectory
        ? `${safeLocalName(entry.name) ?? "root"}.${format ?? "tar"}`
        : safeLocalName(entry.name);
      out = options.out ?? defaultName;
      if (out === undefined)
        throw usage(`files get: ${entry.path} has no usable file name here; choose one with -o`);
      // Checked before downloading so that a refusal costs nothing; checked again when renaming.
      if (!options.force && existsSync(out))
        throw new BulwarkError(
          "BULWARK_CLI_FILE",
          `cannot write ${out}: the file exists (use --force to replace it)`,
        );
    }

    const query = { path: entry.path, partition: resolved };
    const download = isDirectory
      ? await api.openDownload(backupPath(args.restorePoint, "/files/archive"), {
          ...query,
          format: format ?? "tar",
        })
      : await api.openDownload(backupPath(args.restorePoint, "/files/content"), query);
    const what = `${entry.path} of restore point ${args.restorePoint}`;
    if (out === undefined) {
      await streamToStdout(download.body, download.headers, what);
      return { streamed: true, exitCode: 0 };
    }
    const bytes = await saveAtomically(download.body, download.headers, out, options.force, what);
    return {
      data: { path: entry.path, bytes, out },
      text: `wrote ${entry.path} (${isDirectory ? `${format ?? "tar"} archive, ` : ""}${formatBytes(bytes)}) to ${out}`,
    };
  },
});
