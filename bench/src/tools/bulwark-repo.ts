import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../exec.js";
import type { BackupTool, ToolContext } from "./tool.js";

/** The monorepo root, from bench/src/tools/. */
export const REPO_ROOT = join(import.meta.dirname, "..", "..", "..");
const REPO_TOOL_DIR = join(REPO_ROOT, "apps", "repo-tool");
/** bulwark-repo and the workspace packages it is built from (`pnpm --filter @bulwark/repo-tool...`). */
const MEASURED_PATHS = ["apps/repo-tool", "packages/repository", "packages/errors", "packages/retention"];

/** The compiled `bulwark-repo` entry point, from the package's `bin` (fallback dist/main.js). */
export async function repoToolEntry(): Promise<string> {
  const manifest = JSON.parse(await readFile(join(REPO_TOOL_DIR, "package.json"), "utf8")) as {
    bin?: string | Record<string, string>;
  };
  const bin = typeof manifest.bin === "string" ? manifest.bin : manifest.bin?.["bulwark-repo"];
  return join(REPO_TOOL_DIR, bin ?? "dist/main.js");
}

/**
 * Bulwark's offline tool: `bulwark-repo put` / `cat` on a local repository. This is the adapter for
 * the repository engine alone; the agent → gRPC → server path will be a sibling adapter.
 */
export function createBulwarkRepo(ctx: ToolContext, opts: { build: boolean }): BackupTool {
  const repo = join(ctx.dir, "repo");
  let entry = "";
  let floorBuilt = false;
  const cli = (...args: string[]) => [
    "node",
    entry,
    "--repo",
    repo,
    "--passphrase-file",
    ctx.passphraseFile,
    ...args,
  ];
  return {
    id: "bulwark",
    backupLabel: "bulwark-repo put",
    restoreLabel: "bulwark-repo cat",
    requirements: [],
    async prepare() {
      try {
        await access(join(REPO_TOOL_DIR, "package.json"));
      } catch {
        throw new Error(
          `apps/repo-tool does not exist yet; run with --tools restic,borg to bench the peers only`,
        );
      }
      // Build the tool and every workspace package it depends on, so the bench runs current code.
      if (opts.build)
        await run({ argv: ["pnpm", "--filter", "@bulwark/repo-tool...", "run", "build"], cwd: REPO_ROOT });
      entry = await repoToolEntry();
      await access(entry).catch(() => {
        throw new Error(`${entry} is missing: build it with pnpm --filter @bulwark/repo-tool... run build`);
      });
    },
    async version() {
      const manifest = JSON.parse(await readFile(join(REPO_TOOL_DIR, "package.json"), "utf8")) as {
        version: string;
      };
      const commit = await run({ argv: ["git", "rev-parse", "--short", "HEAD"], cwd: REPO_ROOT })
        .then((r) => r.stdout.trim())
        .catch(() => "unknown");
      // Only the tool and the workspace packages it is built from say which code was measured.
      const dirty = await run({
        argv: ["git", "status", "--porcelain", "--", ...MEASURED_PATHS],
        cwd: REPO_ROOT,
      })
        .then((r) => (r.stdout.trim() ? "+uncommitted" : ""))
        .catch(() => "");
      return `bulwark-repo ${manifest.version} (git ${commit}${dirty})`;
    },
    init() {
      return { argv: cli("init", "--json") };
    },
    backup(image, name) {
      return { argv: cli("put", image, "--name", name, "--json") };
    },
    async snapshotRef(name, backupStdout) {
      const fromPut = idFrom(lastJson(backupStdout));
      if (fromPut) return fromPut;
      const listed = lastJson((await run({ argv: cli("ls", "--json") })).stdout);
      const points = Array.isArray(listed) ? listed : ((listed as { points?: unknown[] })?.points ?? []);
      for (const point of points) {
        if ((point as { name?: string }).name === name) {
          const id = idFrom(point);
          if (id) return id;
        }
      }
      throw new Error(`bulwark-repo: cannot find the restore point named ${name} in put or ls output`);
    },
    restore(ref, _image, outDir) {
      const restoredPath = join(outDir, "image.img");
      return { command: { argv: cli("cat", ref, "-o", restoredPath) }, restoredPath };
    },
    async floor(image, packedDir, filesDir) {
      // floor.ts runs compiled (no TypeScript loader in the measured process): build it when the
      // bench builds, or when it has never been built.
      const floorEntry = join(REPO_ROOT, "bench", "dist", "floor.js");
      const missing = await access(floorEntry).then(
        () => false,
        () => true,
      );
      if ((opts.build && !floorBuilt) || missing) {
        await run({ argv: ["pnpm", "--filter", "@bulwark/bench", "run", "build"], cwd: REPO_ROOT });
        floorBuilt = true;
      }
      return {
        packed: { argv: ["node", floorEntry, image, packedDir, "packed"] },
        files: { argv: ["node", floorEntry, image, filesDir, "files"] },
      };
    },
    repositoryDirs: () => [repo],
  };
}

/** The last JSON document in a command's stdout (a tool may print progress lines before it). */
function lastJson(stdout: string): unknown {
  const text = stdout.trim();
  try {
    return JSON.parse(text);
  } catch {
    const lines = text.split("\n").reverse();
    for (const line of lines) {
      try {
        return JSON.parse(line);
      } catch {
        // not JSON; keep looking
      }
    }
    return undefined;
  }
}

function idFrom(value: unknown): string | undefined {
  if (!value || typeof value !== "object") return undefined;
  const v = value as { id?: unknown; restorePoint?: { id?: unknown } };
  if (typeof v.id === "string") return v.id;
  if (typeof v.restorePoint?.id === "string") return v.restorePoint.id;
  return undefined;
}
