import { join } from "node:path";
import { run } from "../exec.js";
import type { BackupTool, ToolContext } from "./tool.js";

/**
 * BorgBackup (Debian's 1.2). Encrypted like the others (repokey-blake2) with its default lz4
 * compression spelled out; borg 1.2 uses one core.
 */
export function createBorg(ctx: ToolContext): BackupTool {
  const repo = join(ctx.dir, "repo");
  const env = {
    BORG_REPO: repo,
    BORG_PASSPHRASE: ctx.passphrase,
    // Cache, config, keys and security state under the tool's directory, never in ~/.
    BORG_BASE_DIR: join(ctx.dir, "home"),
    BORG_CACHE_DIR: join(ctx.dir, "home", "cache"),
    BORG_CONFIG_DIR: join(ctx.dir, "home", "config"),
  };
  return {
    id: "borg",
    backupLabel: "borg create",
    restoreLabel: "borg extract",
    requirements: [{ program: "borg", debianPackage: "borgbackup" }],
    async version() {
      const { stdout } = await run({ argv: ["borg", "--version"], env });
      return stdout.trim();
    },
    init() {
      return { argv: ["borg", "init", "--encryption=repokey-blake2"], env };
    },
    backup(image, name) {
      return { argv: ["borg", "create", "--compression", "lz4", `::${name}`, image], env };
    },
    async snapshotRef(name) {
      return name;
    },
    restore(ref, image, outDir) {
      // borg stores paths without the leading slash and extracts relative to the working directory.
      const stored = image.replace(/^\/+/, "");
      return {
        command: { argv: ["borg", "extract", `::${ref}`, stored], env, cwd: outDir },
        restoredPath: join(outDir, stored),
      };
    },
    repositoryDirs: () => [repo],
  };
}
