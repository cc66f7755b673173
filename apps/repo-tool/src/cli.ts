import { createWriteStream } from "node:fs";
import { open, readFile, stat } from "node:fs/promises";
import { basename } from "node:path";
import { pipeline } from "node:stream/promises";
import { BulwarkError, isBulwarkError } from "@bulwark/errors";
import {
  CodecPool,
  collectGarbage,
  ingestFile,
  type KeySecret,
  LocalBackend,
  PointReader,
  prune,
  Repository,
  RestorePool,
  verifyRepository,
} from "@bulwark/repository";
import { Command, CommanderError, Option } from "commander";
import { EXPORT_FORMATS, exportRestorePoint, isLoopback, parseListen, serveRestorePoint } from "./nbd.js";

/**
 * bulwark-repo: the offline repository tool (docs/repository-format.md, "The offline tool").
 * `run` is the whole program so tests can drive it; main.ts only wires it to the process.
 */
export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  /** Ends long-running commands (`nbd`); main.ts aborts it on SIGINT / SIGTERM. */
  signal?: AbortSignal;
}

interface Globals {
  repo?: string;
  passphraseFile?: string;
  keyFile?: string;
  json?: boolean;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

export function parseDuration(text: string): number {
  const m = DURATION.exec(text.trim());
  if (!m)
    throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", `not a duration: ${text} (e.g. 24h, 30m, 7d, 0)`);
  return Number(m[1]) * UNIT_MS[m[2] ?? "s"]!;
}

function count(text: string): number {
  if (!/^\d+$/.test(text)) throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", `not a count: ${text}`);
  return Number(text);
}

async function secretFrom(g: Globals, env: NodeJS.ProcessEnv): Promise<KeySecret> {
  const read = async (path: string, what: string) => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new BulwarkError(
        "BULWARK_REPO_NO_KEY",
        `cannot read the ${what} ${path}: ${(err as Error).message}`,
      );
    }
  };
  if (g.keyFile) return { keyFile: await read(g.keyFile, "key file") };
  if (g.passphraseFile)
    return { passphrase: (await read(g.passphraseFile, "passphrase file")).toString("utf8") };
  if (env.BULWARK_REPO_PASSPHRASE) return { passphrase: env.BULWARK_REPO_PASSPHRASE };
  throw new BulwarkError(
    "BULWARK_REPO_NO_KEY",
    "give --passphrase-file, --key-file or the environment variable BULWARK_REPO_PASSPHRASE",
  );
}

function repoDir(g: Globals): string {
  if (!g.repo) throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", "--repo <dir> is required");
  return g.repo;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export async function run(argv: string[], io: Io): Promise<number> {
  let exit = 0;
  let globals: Globals = {};
  const out = (json: unknown, text: string) => {
    io.stdout.write(globals.json ? `${JSON.stringify(json, null, 2)}\n` : `${text}\n`);
  };
  const withRepo = async <T>(
    fn: (repo: Repository) => Promise<T>,
    opts: { restorePool?: RestorePool; codecPool?: CodecPool } = {},
  ): Promise<T> => {
    let repo: Repository;
    try {
      repo = await Repository.open(
        new LocalBackend(repoDir(globals)),
        await secretFrom(globals, io.env),
        opts,
      );
    } catch (err) {
      await Promise.all([opts.restorePool?.close(), opts.codecPool?.close()]);
      throw err;
    }
    try {
      return await fn(repo);
    } finally {
      await repo.close();
    }
  };

  const program = new Command("bulwark-repo")
    .description(
      "Offline tool for a Bulwark repository: back up, list, restore, verify, collect garbage, prune",
    )
    .option("--repo <dir>", "repository directory")
    .option("--passphrase-file <file>", "file holding the passphrase (or set BULWARK_REPO_PASSPHRASE)")
    .option("--key-file <file>", "key file (at least 32 bytes) instead of a passphrase")
    .option("--json", "print results as JSON")
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .hook("preAction", (cmd) => {
      globals = cmd.opts<Globals>();
    });

  program
    .command("init")
    .description("create a repository and its first key")
    .option("--chunk-size <bytes>", "chunk size for new restore points (power of two)", "65536")
    .action(async (o: { chunkSize: string }) => {
      const secret = await secretFrom(globals, io.env);
      const repo = await Repository.init(new LocalBackend(repoDir(globals)), secret, {
        chunkSize: count(o.chunkSize),
      });
      await repo.close();
      out(
        { repositoryId: repo.config.repositoryId, chunkSize: repo.config.chunkSize },
        `created repository ${repo.config.repositoryId} at ${globals.repo}`,
      );
    });

  program
    .command("put <image>")
    .description("ingest an image file or block device as a new restore point")
    .option("--name <name>", "volume name (default: the file name)")
    .option("--base <restore-point>", "restore point to reuse index nodes from (same volume size)")
    .action(async (image: string, o: { name?: string; base?: string }) => {
      await withRepo(
        async (repo) => {
          const started = performance.now();
          const base = o.base ? (await repo.resolvePoint(o.base)).id : undefined;
          const point = await ingestFile(repo, image, {
            name: o.name ?? basename(image),
            ...(base ? { base } : {}),
          });
          const seconds = (performance.now() - started) / 1000;
          out(
            { ...point, seconds, throughputMBps: point.volumeSize / 1e6 / seconds },
            `${point.id}  ${point.name}  ${mib(point.volumeSize)} in ${seconds.toFixed(1)} s, ` +
              `${point.stats.newChunks} new chunks, ${mib(point.stats.newStoredBytes)} stored`,
          );
        },
        // Started before the key is derived: the workers' start-up overlaps scrypt.
        { codecPool: new CodecPool(null) },
      );
    });

  program
    .command("ls")
    .description("list restore points")
    .action(async () => {
      await withRepo(async (repo) => {
        const { points, broken } = await repo.scanPoints();
        out(
          { points, broken: broken.map((b) => ({ id: b.id, error: b.error.toJSON().error })) },
          [
            ...points.map((p) => `${p.id}  ${p.createdAt}  ${p.name}  ${p.volumeSize} bytes`),
            ...broken.map((b) => `${b.id}  UNREADABLE  ${b.error.code}`),
          ].join("\n") || "(no restore points)",
        );
        if (broken.length) exit = 1;
      });
    });

  program
    .command("cat <restore-point>")
    .description("write a restore point's raw image to stdout or a file (id, unique prefix or 'latest')")
    .option("-o, --output <file>", "write here instead of stdout (regular files are written sparse)")
    .action(async (ref: string, o: { output?: string }) => {
      // Into a regular file the restore workers do the work: started now, they load their modules
      // while the main thread derives the key.
      const toFile = o.output !== undefined && (await isFileOrAbsent(o.output));
      await withRepo(
        async (repo) => {
          const point = await repo.resolvePoint(ref);
          const reader = new PointReader(repo, point);
          if (!o.output) {
            await pipeline(reader.stream(), io.stdout);
            return;
          }
          await writeImage(reader, o.output);
          if (globals.json) out({ id: point.id, output: o.output, bytes: point.volumeSize }, "");
        },
        toFile ? { restorePool: new RestorePool() } : {},
      );
    });

  program
    .command("nbd <restore-point>")
    .description("serve a restore point as an NBD export until interrupted or expired (docs/nbd.md)")
    .option("--writable", "accept writes into a copy-on-write overlay (discarded at the end)")
    .option(
      "--listen <host:port>",
      "address to listen on (plain NBD: keep it on loopback)",
      "127.0.0.1:10809",
    )
    .option("--ttl <duration>", "the export expires after this long", "24h")
    .action(async (ref: string, o: { writable?: boolean; listen: string; ttl: string }) => {
      const listen = parseListen(o.listen);
      const ttlMs = parseDuration(o.ttl);
      if (!isLoopback(listen.host)) {
        io.stderr.write(
          `warning: ${listen.host} is not a loopback address; plain NBD has no authentication or encryption, ` +
            "anyone who can reach it and learns the export name can read the image\n",
        );
      }
      await withRepo(async (repo) => {
        const how = await serveRestorePoint(repo, ref, {
          writable: !!o.writable,
          listen,
          ttlMs,
          ...(io.signal ? { signal: io.signal } : {}),
          onReady: (point, e) =>
            out(
              { id: point.id, uri: e.uri, size: e.size, writable: e.writable, expiresAt: e.expiresAt },
              `serving ${point.id} (${point.name}, ${point.volumeSize} bytes` +
                `${e.size !== point.volumeSize ? ` padded to ${e.size} (whole sectors)` : ""}, ` +
                `${e.writable ? "writable through a copy-on-write overlay" : "read-only"}) at\n${e.uri}\n` +
                `until ${e.expiresAt.toISOString()}; Ctrl-C to stop`,
            ),
        });
        io.stderr.write(how === "expired" ? "the export expired\n" : "stopped\n");
      });
    });

  program
    .command("export <restore-point>")
    .description("convert a restore point to an image file with qemu-img, read over a local NBD export")
    .addOption(
      new Option("--format <format>", "image format")
        .choices(Object.keys(EXPORT_FORMATS))
        .makeOptionMandatory(),
    )
    .requiredOption("--out <file>", "image file to write")
    .action(async (ref: string, o: { format: string; out: string }) => {
      await withRepo(async (repo) => {
        const r = await exportRestorePoint(repo, ref, { format: o.format, out: o.out });
        out(
          { id: r.point.id, format: r.format, out: r.out, bytes: r.point.volumeSize },
          `wrote ${r.point.id} as ${r.format} to ${r.out}`,
        );
      });
    });

  program
    .command("verify")
    .description("check every restore point's index and chunks")
    .option("--read-data", "decrypt and re-hash every chunk (slow, complete)")
    .action(async (o: { readData?: boolean }) => {
      await withRepo(async (repo) => {
        const report = await verifyRepository(repo, { readData: !!o.readData });
        const lines = [
          `${report.points} restore points, ${report.nodes} index nodes, ${report.chunks} chunks checked` +
            (report.readData ? " (data read)" : " (structure)"),
          ...report.problems.map(
            (p) =>
              `${p.kind.toUpperCase()} ${p.what} ${p.object}: ${p.message}; breaks ${p.points.join(", ")}`,
          ),
          report.ok
            ? "no problems found"
            : `BULWARK_REPO_VERIFY_FAILED: broken restore points: ${report.brokenPoints.join(", ")}`,
        ];
        out(
          report.ok
            ? report
            : { ...report, error: { code: "BULWARK_REPO_VERIFY_FAILED", message: "verify found problems" } },
          lines.join("\n"),
        );
        if (!report.ok) exit = 1;
      });
    });

  program
    .command("gc")
    .description("delete chunks that no restore point or running ingest needs")
    .option("--grace <duration>", "keep unreferenced chunks younger than this", "24h")
    .option("--dry-run", "only report")
    .action(async (o: { grace: string; dryRun?: boolean }) => {
      await withRepo(async (repo) => {
        const report = await collectGarbage(repo, { graceMs: parseDuration(o.grace), dryRun: !!o.dryRun });
        out(
          report,
          `${o.dryRun ? "would delete" : "deleted"} ${report.deleted} chunks (${mib(report.deletedBytes)}); ` +
            `${report.marked} live objects, ${report.keptYoung} unreferenced kept (younger than ${report.cutoff})`,
        );
      });
    });

  const pruneCmd = program
    .command("prune")
    .description(
      "delete restore points a GFS retention policy does not keep (per volume name); run gc afterwards",
    )
    .option("--dry-run", "list what would be deleted and why, delete nothing")
    .option("--timezone <tz>", "IANA timezone for calendar buckets", "UTC");
  for (const [flag, key] of [
    ["--keep-last", "keepLast"],
    ["--keep-hourly", "hourly"],
    ["--keep-daily", "daily"],
    ["--keep-weekly", "weekly"],
    ["--keep-monthly", "monthly"],
    ["--keep-yearly", "yearly"],
  ] as const) {
    pruneCmd.addOption(
      new Option(
        `${flag} <n>`,
        key === "keepLast" ? "keep the last n restore points" : `keep n ${key} restore points`,
      ).argParser(count),
    );
  }
  pruneCmd.action(async (o: Record<string, number | string | boolean | undefined>) => {
    const policy = {
      ...(o.keepLast !== undefined ? { keepLast: o.keepLast as number } : {}),
      ...(o.keepHourly !== undefined ? { hourly: o.keepHourly as number } : {}),
      ...(o.keepDaily !== undefined ? { daily: o.keepDaily as number } : {}),
      ...(o.keepWeekly !== undefined ? { weekly: o.keepWeekly as number } : {}),
      ...(o.keepMonthly !== undefined ? { monthly: o.keepMonthly as number } : {}),
      ...(o.keepYearly !== undefined ? { yearly: o.keepYearly as number } : {}),
    };
    if (Object.keys(policy).length === 0) {
      throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", "prune needs at least one --keep-* option");
    }
    await withRepo(async (repo) => {
      const report = await prune(repo, policy, { dryRun: !!o.dryRun, timezone: o.timezone as string });
      out(
        report,
        [
          ...report.keep.map((k) => `keep   ${k.id}  ${k.createdAt}  ${k.name}  (${k.reasons.join(", ")})`),
          ...report.remove.map(
            (r) =>
              `${o.dryRun ? "would remove" : "remove"} ${r.id}  ${r.createdAt}  ${r.name}  (${r.reason})`,
          ),
          o.dryRun
            ? `dry run: ${report.remove.length} would be removed`
            : `${report.deleted} restore points removed; run gc to reclaim space`,
        ].join("\n"),
      );
    });
  });

  try {
    await program.parseAsync(argv, { from: "user" });
    return exit;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.exitCode === 0)
        return 0;
      const e = new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", err.message);
      report(e, globals.json ?? argv.includes("--json"), io);
      return 2;
    }
    const e = isBulwarkError(err)
      ? err
      : new BulwarkError("BULWARK_GENERAL_INTERNAL", (err as Error)?.message ?? String(err), { cause: err });
    report(e, globals.json ?? argv.includes("--json"), io);
    return 1;
  }
}

function report(err: BulwarkError, json: boolean, io: Io): void {
  if (json) io.stdout.write(`${JSON.stringify(err.toJSON(), null, 2)}\n`);
  io.stderr.write(`${err.code}: ${err.message}\n`);
}

async function isFileOrAbsent(path: string): Promise<boolean> {
  const existing = await stat(path).catch(() => null);
  return !existing || existing.isFile();
}

/** Writes the image to a file: regular files sparse (zero chunks become holes), devices in full. */
async function writeImage(reader: PointReader, path: string): Promise<void> {
  if (!(await isFileOrAbsent(path))) {
    await pipeline(reader.stream(), createWriteStream(path, { flags: "r+" }));
    return;
  }
  const fh = await open(path, "w");
  try {
    // The codec workers write the chunks straight into the (truncated) file; zero chunks stay holes.
    await reader.writeInto(fh.fd);
    await fh.truncate(reader.size);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
