import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { mkdir, mkdtemp, rm, statfs, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { aggregateRuns } from "./aggregate.js";
import { type BenchOptions, parseBenchArgs, USAGE } from "./args.js";
import { writeResultsSection } from "./docs.js";
import { formatBytes, renderTextTable, resultTables } from "./format.js";
import { buildImage, sha256File } from "./image.js";
import { machineFacts } from "./machine.js";
import { BASE_REQUIREMENTS, ensurePrograms } from "./prereqs.js";
import type { BenchResults } from "./results.js";
import { runScenarios } from "./scenarios.js";
import { createBorg } from "./tools/borg.js";
import { createBulwarkAgent } from "./tools/bulwark-agent.js";
import { createBulwarkRepo, REPO_ROOT } from "./tools/bulwark-repo.js";
import { createRestic } from "./tools/restic.js";
import type { BackupTool, ToolContext } from "./tools/tool.js";

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

function createTool(id: string, ctx: ToolContext, opts: BenchOptions): BackupTool {
  switch (id) {
    case "restic":
      return createRestic(ctx);
    case "borg":
      return createBorg(ctx);
    case "bulwark":
      return createBulwarkRepo(ctx, { build: opts.build });
    case "bulwark-agent":
      return createBulwarkAgent(ctx, {
        build: opts.build,
        adminDatabaseUrl: opts.databaseUrl,
        streams: opts.agentStreams,
        deltaChange: opts.deltaChange,
        seed: opts.seed,
        fill: opts.fill,
        log,
      });
    default:
      throw new Error(`unknown tool ${id}`);
  }
}

async function main(): Promise<number> {
  // pnpm runs the script in bench/; paths on the command line are relative to where the user was.
  const userCwd = process.env.INIT_CWD ?? process.cwd();
  const argv = process.argv.slice(2).filter((a) => a !== "--"); // `pnpm bench -- --quick` passes the --
  const parsed = parseBenchArgs(argv, {
    workDir: join(REPO_ROOT, "bench", "work"),
    docs: join(REPO_ROOT, "docs", "benchmarks.md"),
  });
  if (parsed === "help") {
    console.log(USAGE);
    return 0;
  }
  const opts: BenchOptions = {
    ...parsed,
    workDir: resolve(userCwd, parsed.workDir),
    docs: parsed.docs && resolve(userCwd, parsed.docs),
    json: parsed.json && resolve(userCwd, parsed.json),
  };

  await mkdir(opts.workDir, { recursive: true });
  const runDir = await mkdtemp(join(opts.workDir, "run-"));
  const cleanup = () => {
    if (!opts.keep) rmSync(runDir, { recursive: true, force: true });
  };
  // Servers and databases the tools started, stopped and dropped also on Ctrl-C.
  let started: BackupTool[] = [];
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping the tools, removing ${runDir}`);
      void Promise.allSettled(started.map((t) => t.stop?.())).then(() => {
        cleanup();
        process.exit(130);
      });
    });
  }

  try {
    // Image, three repositories of up to about the image's size, the ingest floor's two outputs and
    // one restored copy at a time.
    const fs = await statfs(runDir);
    const free = fs.bavail * fs.bsize;
    if (free < opts.size * 6) {
      throw new Error(
        `${runDir} has ${formatBytes(free)} free; this run needs about ${formatBytes(opts.size * 6)}`,
      );
    }

    const passphrase = randomBytes(24).toString("hex");
    const passphraseFile = join(runDir, "passphrase");
    await writeFile(passphraseFile, passphrase, { mode: 0o600 });
    const tools = opts.tools.map((id) => {
      const dir = join(runDir, id);
      return { dir, tool: createTool(id, { dir, passphrase, passphraseFile }, opts) };
    });
    started = tools.map((t) => t.tool);
    await ensurePrograms([...BASE_REQUIREMENTS, ...tools.flatMap((t) => t.tool.requirements)], log);
    for (const { tool } of tools) await tool.prepare?.();

    log(`building a ${formatBytes(opts.size)} ext4 image (fill ${opts.fill}, seed ${opts.seed})`);
    const imagePath = join(runDir, "image.img");
    const image = await buildImage({
      path: imagePath,
      size: opts.size,
      fill: opts.fill,
      seed: opts.seed,
      scratchDir: runDir,
    });
    // Hashing also pulls the image into the page cache, so every tool starts from a warm cache.
    const imageSha256 = await sha256File(imagePath);
    log(
      `image ready: ${image.tree.files} files, ${formatBytes(image.tree.bytes)} of data, sha256 ${imageSha256}`,
    );

    const loadAtStart = loadavg()[0]!;
    const outcomes: Awaited<ReturnType<typeof runScenarios>>[] = [];
    try {
      for (let r = 0; r < opts.runs; r++) {
        if (opts.runs > 1) log(`run ${r + 1} of ${opts.runs}`);
        // Fresh, empty directories: every run starts from empty repositories and caches.
        for (const tool of tools) {
          await rm(tool.dir, { recursive: true, force: true });
          await mkdir(tool.dir);
        }
        try {
          outcomes.push(
            await runScenarios({
              tools: tools.map((t) => t.tool),
              image: imagePath,
              imageSha256,
              seed: opts.seed,
              writes: opts.writes,
              runDir,
              repoRoot: REPO_ROOT,
              passphrase,
              log,
            }),
          );
        } finally {
          for (const tool of tools) await tool.tool.afterRun?.();
        }
      }
    } finally {
      for (const tool of tools) await tool.tool.stop?.();
    }

    const results: BenchResults = {
      date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      command: ["pnpm bench", ...argv].join(" "),
      runs: opts.runs,
      machine: await machineFacts(runDir, loadAtStart),
      image: {
        sizeBytes: image.size,
        fill: image.fill,
        seed: image.seed,
        files: image.tree.files,
        dataBytes: image.tree.bytes,
        byKind: image.tree.byKind,
        sha256: imageSha256,
        mkfsCommand: image.mkfsArgv.map((a) => a.split(runDir).join("$WORK")).join(" "),
        pinCommand: image.pinCommand.split(runDir).join("$WORK"),
      },
      writes: outcomes[0]!.writes,
      tools: aggregateRuns(outcomes.map((o) => o.runs)),
    };

    for (const table of resultTables(results)) console.log(`\n${renderTextTable(table)}`);
    if (opts.docs) {
      await writeResultsSection(opts.docs, results);
      log(`wrote ${opts.docs}`);
    }
    if (opts.json) await writeFile(opts.json, `${JSON.stringify(results, null, 2)}\n`);

    const broken = results.tools
      .filter(
        (t) =>
          !t.restore.verified ||
          (t.agentRestore && (!t.agentRestore.delta.verified || !t.agentRestore.file.verified)),
      )
      .map((t) => t.tool);
    if (broken.length > 0) {
      log(`restores that did not return the image: ${broken.join(", ")}`);
      return 1;
    }
    return 0;
  } finally {
    cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
