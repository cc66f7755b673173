import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { type CommandSpec, type Measurement, measure, run } from "./exec.js";
import { applyScatteredWrites, planScatteredWrites, readBlocks, sha256File, writeBlocks } from "./image.js";
import type { StepMeasurement, ToolRun } from "./results.js";
import type { BackupTool } from "./tools/tool.js";

export interface ScenarioOptions {
  tools: BackupTool[];
  /** The image every tool backs up, at the same path (tools key incremental state by path). */
  image: string;
  imageSha256: string;
  seed: string;
  writes: number;
  /** Run directory; shown as $WORK in the recorded commands. */
  runDir: string;
  /** Monorepo root; paths under it are shown relative to it. */
  repoRoot: string;
  /** Passphrase, masked in the recorded commands. */
  passphrase: string;
  log: (line: string) => void;
}

export interface ScenarioOutcome {
  runs: ToolRun[];
  writes: { count: number; changedBytes: number; sha256After: string };
}

/**
 * Runs the three scenarios on every tool, interleaved by scenario so all tools see the same image
 * state and similar machine conditions:
 *  a. full ingest of the image into an empty repository;
 *  b. scattered 4 KiB writes to the image, then an incremental backup of it;
 *  c. restore of the incremental backup to a file, hashed against the image; then, for a tool
 *     that has them (the agent → server path), a delta restore onto that file after scattered
 *     damage and a single-file download, hash-checked too.
 */
export async function runScenarios(opts: ScenarioOptions): Promise<ScenarioOutcome> {
  const { tools, image, log } = opts;
  const scratch = join(opts.runDir, "scratch");
  await mkdir(scratch, { recursive: true });
  // The floor's outputs stay until the run ends: deleting tens of thousands of files just before
  // another tool writes its own costs that tool (ext4 without a journal skips recently freed
  // inodes one by one when it allocates).
  const floorDir = join(opts.runDir, "floor");
  const show = (spec: CommandSpec) => displayCommand(spec, opts.runDir, opts.passphrase, opts.repoRoot);

  const partial = new Map<string, Partial<ToolRun>>();
  for (const tool of tools) {
    await tool.beforeInit?.();
    const init = tool.init();
    await run(init);
    await tool.afterInit?.();
    partial.set(tool.id, {
      tool: tool.id,
      version: await tool.version(),
      backupLabel: tool.backupLabel,
      restoreLabel: tool.restoreLabel,
      commands: { init: show(init), backup: "", incremental: "", restore: "" },
    });
  }

  for (const tool of tools) {
    const spec = tool.backup(image, "full");
    log(`a. ${tool.id}: ${show(spec)}`);
    const m = await measure(spec, scratch);
    const result = partial.get(tool.id)!;
    result.ingest = { ...step(m), repoBytes: await repositoryBytes(tool) };
    const extra = await tool.afterBackup?.("ingest", m.stdout);
    if (extra) result.agentPath = { ingest: extra, incremental: extra };
    result.commands!.backup = show(spec);
    log(`   ${m.elapsedSeconds.toFixed(2)} s, repository ${result.ingest.repoBytes} bytes`);
    if (tool.floor) {
      const floor = await tool.floor(
        image,
        join(floorDir, `${tool.id}-packed`),
        join(floorDir, `${tool.id}-files`),
      );
      log(`a. ${tool.id} floor: ${show(floor.packed)}; ${show(floor.files)}`);
      const packed = await measure(floor.packed, scratch);
      const files = await measure(floor.files, scratch);
      result.floor = { packed: step(packed), files: step(files) };
      result.commands!.floor = [show(floor.packed), show(floor.files)];
      log(
        `   floor ${packed.elapsedSeconds.toFixed(2)} s packed, ${files.elapsedSeconds.toFixed(2)} s a file per blob`,
      );
    }
  }

  const offsets = planScatteredWrites(opts.seed, (await stat(image)).size, opts.writes);
  const original = await readBlocks(image, offsets);
  const changedBytes = await applyScatteredWrites(image, opts.seed, offsets);
  const sha256After = await sha256File(image);
  log(`b. wrote ${opts.writes} random 4 KiB blocks (${changedBytes} bytes) into the image`);

  const refs = new Map<string, string>();
  for (const tool of tools) {
    const spec = tool.backup(image, "incremental");
    log(`b. ${tool.id}: ${show(spec)}`);
    const m = await measure(spec, scratch);
    const result = partial.get(tool.id)!;
    result.incremental = { ...step(m), repoBytes: await repositoryBytes(tool) };
    const extra = await tool.afterBackup?.("incremental", m.stdout);
    if (extra && result.agentPath) result.agentPath.incremental = extra;
    result.commands!.incremental = show(spec);
    refs.set(tool.id, await tool.snapshotRef("incremental", m.stdout));
    log(
      `   ${m.elapsedSeconds.toFixed(2)} s, growth ${result.incremental.repoBytes - result.ingest!.repoBytes} bytes`,
    );
  }

  for (const tool of tools) {
    const outDir = join(opts.runDir, "restore", tool.id);
    await mkdir(outDir, { recursive: true });
    const { command, restoredPath } = await tool.restore(refs.get(tool.id)!, image, outDir);
    log(`c. ${tool.id}: ${show(command)}`);
    const m = await measure(command, scratch);
    const restoredSha256 = await sha256File(restoredPath).catch(() => "missing");
    const identical = restoredSha256 === sha256After;
    const explained =
      !identical && tool.explainMismatch
        ? await tool.explainMismatch(restoredPath, image).catch((err: unknown) => ({
            text: `could not explain: ${err instanceof Error ? err.message : String(err)}`,
            acceptable: false,
          }))
        : undefined;
    const verified = identical || explained?.acceptable === true;
    const result = partial.get(tool.id)!;
    result.restore = { ...step(m), verified, restoredSha256 };
    if (explained) result.restore.mismatch = explained.text;
    result.commands!.restore = show(command);
    const verdict = identical
      ? "bytes match the image"
      : verified
        ? "every allocated block matches the image"
        : "RESTORED BYTES DIFFER FROM THE IMAGE";
    log(
      `   ${m.elapsedSeconds.toFixed(2)} s, ${verdict}${result.restore.mismatch ? `: ${result.restore.mismatch}` : ""}`,
    );
    // Delta restore onto this target and single-file download: only after a restore that counts.
    if (verified && tool.afterRestore) {
      const extra = await tool.afterRestore({
        restoredPath,
        restoredSha256,
        restoreStdout: m.stdout,
        image,
        seed: opts.seed,
        measure: (spec) => measure(spec, scratch),
        show,
        scratchDir: scratch,
      });
      result.agentRestore = extra.run;
      result.commands!.deltaRestore = extra.commands.deltaRestore;
      result.commands!.fileDownload = extra.commands.fileDownload;
    }
    // Free the space now: the next tool restores another full copy.
    await rm(outDir, { recursive: true, force: true });
  }

  await rm(floorDir, { recursive: true, force: true });
  // Put the image back as it was, so a further run starts from the same bytes.
  await writeBlocks(image, offsets, original);
  if ((await sha256File(image)) !== opts.imageSha256)
    throw new Error("the image did not return to its original bytes");

  return {
    runs: tools.map((tool) => partial.get(tool.id) as ToolRun),
    writes: { count: opts.writes, changedBytes, sha256After },
  };
}

function step(m: Measurement): StepMeasurement {
  return {
    wallSeconds: m.elapsedSeconds,
    userSeconds: m.userSeconds,
    systemSeconds: m.systemSeconds,
    maxRssBytes: m.maxRssBytes,
  };
}

/** Apparent size of every file under the tool's repository directories. */
export async function repositoryBytes(tool: BackupTool): Promise<number> {
  let total = 0;
  for (const dir of tool.repositoryDirs()) total += await treeBytes(dir);
  return total;
}

export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await treeBytes(path);
    else if (entry.isFile()) total += (await stat(path)).size;
  }
  return total;
}

/**
 * A command as the docs show it: work directory as $WORK, passphrase masked, paths in the monorepo
 * relative to its root (the bench's commands read as if run from there), env first.
 */
export function displayCommand(
  spec: CommandSpec,
  runDir: string,
  passphrase: string,
  repoRoot?: string,
): string {
  // borg takes the image path without its leading slash: that one reads ${WORK#/} in shell.
  const clean = (text: string) =>
    text
      .split(runDir)
      .join("$WORK")
      .split(runDir.replace(/^\/+/, ""))
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
      .join("${WORK#/}")
      .split(passphrase)
      .join("<passphrase>")
      .split(repoRoot ? `${repoRoot}/` : "\0")
      .join("");
  const env = Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${clean(v)}`);
  const cd = spec.cwd ? [`(cd ${clean(spec.cwd)} &&`] : [];
  const argv = spec.argv.map(clean);
  return [...cd, ...env, ...argv].join(" ") + (spec.cwd ? ")" : "");
}
