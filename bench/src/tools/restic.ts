import { join } from "node:path";
import { run } from "../exec.js";
import type { BackupTool, ToolContext } from "./tool.js";

/**
 * restic (Debian's 0.14). Repository format 2 so restic compresses (zstd "auto"), which is its
 * strongest configuration for images; everything else is left at its defaults.
 */
export function createRestic(ctx: ToolContext): BackupTool {
  const repo = join(ctx.dir, "repo");
  const env = {
    RESTIC_REPOSITORY: repo,
    RESTIC_PASSWORD_FILE: ctx.passphraseFile,
    RESTIC_CACHE_DIR: join(ctx.dir, "cache"),
  };
  return {
    id: "restic",
    backupLabel: "restic backup",
    restoreLabel: "restic restore",
    requirements: [{ program: "restic", debianPackage: "restic" }],
    async version() {
      const { stdout } = await run({ argv: ["restic", "version"], env });
      return stdout.trim();
    },
    init() {
      return { argv: ["restic", "init", "--repository-version", "2"], env };
    },
    backup(image) {
      // A fixed host keeps the parent-snapshot lookup stable across runs.
      return { argv: ["restic", "backup", "--quiet", "--host", "bulwark-bench", image], env };
    },
    async snapshotRef() {
      const { stdout } = await run({
        argv: ["restic", "snapshots", "--json", "--host", "bulwark-bench"],
        env,
      });
      const snapshots = JSON.parse(stdout) as { id: string; time: string }[];
      const newest = snapshots.sort((a, b) => Date.parse(b.time) - Date.parse(a.time))[0];
      if (!newest) throw new Error("restic lists no snapshot after backup");
      return newest.id;
    },
    restore(ref, image, outDir) {
      // restic recreates the absolute path of the backed-up file under --target.
      return {
        command: { argv: ["restic", "restore", ref, "--target", outDir], env },
        restoredPath: join(outDir, image),
      };
    },
    repositoryDirs: () => [repo],
  };
}
