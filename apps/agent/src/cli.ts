#!/usr/bin/env node
import { parseArgs } from "node:util";
import { isBulwarkError } from "@bulwark/errors";
import { FileByteSource, totalLength } from "@bulwark/filesystems";
import { type CommandRunner, ProcessCommandRunner } from "./command-runner.js";
import { collectInventory } from "./inventory/index.js";
import { planDiskCapture } from "./plan/disk-plan.js";
import { planVolume } from "./plan/volume-plan.js";
import { SnapshotJournal } from "./snapshot/journal.js";
import { processReleases } from "./snapshot/release-registry.js";
import { cleanupStaleSnapshots } from "./snapshot/session.js";

/** Default state directory (journal, index caches) on Linux; Windows uses %ProgramData%. */
const DEFAULT_STATE_DIR =
  process.platform === "win32"
    ? `${process.env.ProgramData ?? "C:\\ProgramData"}\\Bulwark\\agent`
    : "/var/lib/bulwark-agent";
/** 4 MiB: a placeholder until the repository fixes the chunk size; every command takes --chunk-size. */
const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

const USAGE = `usage: bulwark-agent <command> [options]
  inventory                      disks, partitions and volumes of this machine
  plan <device|image>            which chunks a backup would read (--chunk-size BYTES)
  disk-plan <disk|image>         partition table regions and partitions of a whole disk
  cleanup                        remove snapshots a killed run left behind (--state-dir DIR)
options: --json  --chunk-size BYTES  --state-dir DIR`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: "boolean", default: false },
      "chunk-size": { type: "string" },
      "state-dir": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const [command, target] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return command || values.help ? 0 : 2;
  }
  processReleases.installSignalHandlers();
  const runner = new ProcessCommandRunner();
  const print = (value: unknown, text: () => string): void => {
    process.stdout.write(values.json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
  };
  switch (command) {
    case "inventory": {
      const inventory = await collectInventory(runner);
      print(inventory, () =>
        inventory.disks
          .map((d) =>
            [
              `${d.path} ${d.size} bytes ${d.partitionTable ?? "no table"} ${d.model ?? ""}`.trim(),
              ...d.volumes.map(
                (v) => `  ${v.kind} ${v.path} ${v.filesystem ?? "-"} ${v.mountpoints.join(",")}`,
              ),
              ...d.partitions.flatMap((p) => [
                `  ${p.path} ${p.size} bytes`,
                ...p.volumes.map(
                  (v) => `    ${v.kind} ${v.path} ${v.filesystem ?? "-"} ${v.mountpoints.join(",")}`,
                ),
              ]),
            ].join("\n"),
          )
          .join("\n"),
      );
      return 0;
    }
    case "plan": {
      if (!target) throw new Error("plan needs a device or image path");
      const chunkSize = Number(values["chunk-size"] ?? DEFAULT_CHUNK_SIZE);
      const source = await FileByteSource.open(target);
      try {
        const { plan, filesystem, bitmapSkipped } = await planVolume(source, { chunkSize });
        const summary = {
          filesystem,
          method: plan.method,
          volumeSize: plan.volumeSize,
          chunkSize: plan.chunkSize,
          chunkCount: plan.chunkCount,
          chunksToRead: plan.read.reduce((n, r) => n + r.count, 0),
          chunksUnused: plan.unused.reduce((n, r) => n + r.count, 0),
          bytesToRead: plan.bytesToRead,
          ...(bitmapSkipped ? { bitmapSkipped } : {}),
        };
        print(summary, () =>
          Object.entries(summary)
            .map(([k, v]) => `${k}: ${v}`)
            .join("\n"),
        );
      } finally {
        await source.close();
      }
      return 0;
    }
    case "disk-plan": {
      if (!target) throw new Error("disk-plan needs a disk or image path");
      const source = await FileByteSource.open(target);
      try {
        const plan = await planDiskCapture(source);
        print(plan, () =>
          [
            `table: ${plan.table ? `${plan.table.type} (${plan.table.diskId})` : "none"}`,
            `metadata: ${totalLength(plan.metadataRegions)} bytes in ${plan.metadataRegions.length} regions`,
            ...plan.partitions.map((p) => `  #${p.number} @${p.offset} ${p.length} bytes ${p.filesystem}`),
            ...plan.warnings.map((w) => `warning: ${w}`),
          ].join("\n"),
        );
      } finally {
        await source.close();
      }
      return 0;
    }
    case "cleanup": {
      const journal = SnapshotJournal.inDirectory(values["state-dir"] ?? DEFAULT_STATE_DIR);
      const ctx = { runner, journal, releases: processReleases };
      // The LVM tag scan also catches snapshots whose journal was lost; only where LVM exists.
      const scanLvm = process.platform === "linux" && (await hasCommand(runner, "lvs"));
      const result = await cleanupStaleSnapshots(ctx, { scanLvm });
      print(
        result,
        () =>
          [
            ...result.cleaned.map((c) => `removed ${c}`),
            ...result.failed.map((f) => `FAILED ${f.id}: ${f.error}`),
          ].join("\n") || "nothing to clean",
      );
      return result.failed.length ? 1 : 0;
    }
    default:
      process.stderr.write(`unknown command ${command}\n${USAGE}\n`);
      return 2;
  }
}

async function hasCommand(runner: CommandRunner, command: string): Promise<boolean> {
  try {
    return (await runner.run({ command, args: ["--version"] })).exitCode === 0;
  } catch {
    return false;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (isBulwarkError(err)) process.stderr.write(`${err.code}: ${err.message}\n`);
    else process.stderr.write(`bulwark-agent: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
