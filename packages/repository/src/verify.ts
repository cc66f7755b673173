import { BulwarkError } from "@bulwark/errors";
import { BLOB_OVERHEAD, BlobKind } from "./blob.js";
import { chunkKey } from "./chunk-index.js";
import { idFromHex } from "./ids.js";
import type { Repository } from "./repository.js";
import { walkTree } from "./walk.js";

/**
 * Verify (spec, "Concurrency": may run beside anything). Structure mode reads every index node of
 * every point and checks every chunk exists; `readData` also decrypts and re-hashes every chunk.
 * Each problem names the object and the restore points it breaks. Memory: one entry per unique
 * chunk (which points use it).
 */
export interface VerifyProblem {
  /** Backend key of the damaged or missing object. */
  object: string;
  kind: "missing" | "corrupt";
  what: "chunk" | "index-node" | "restore-point";
  message: string;
  /** Restore points that cannot be fully restored because of it. */
  points: string[];
}

export interface VerifyReport {
  ok: boolean;
  points: number;
  nodes: number;
  chunks: number;
  readData: boolean;
  problems: VerifyProblem[];
  brokenPoints: string[];
}

/** Chunks verified at once with --read-data (each up to a chunk size in memory). */
const READ_CONCURRENCY = 8;

export async function verifyRepository(
  repo: Repository,
  /** `signal` stops the run (throwing its reason) before the next restore point or chunk. */
  opts: { readData?: boolean; signal?: AbortSignal } = {},
): Promise<VerifyReport> {
  const { points, broken } = await repo.scanPoints();
  const problems: VerifyProblem[] = broken.map((b) => ({
    object: `points/${b.id}`,
    kind: "corrupt",
    what: "restore-point",
    message: b.error.message,
    points: [b.id],
  }));
  const chunkUsers = new Map<string, string[]>();
  const nodeProblems = new Map<string, { err: unknown; points: Set<string> }>();
  let nodes = 0;
  for (const point of points) {
    opts.signal?.throwIfAborted();
    const seen = new Set<string>();
    await walkTree(repo, point, {
      onNode: (hex) => {
        if (seen.has(hex)) return false;
        seen.add(hex);
        nodes++;
        return true;
      },
      onChunk: (hex) => {
        const users = chunkUsers.get(hex);
        if (!users) chunkUsers.set(hex, [point.id]);
        else if (users.at(-1) !== point.id) users.push(point.id);
      },
      onNodeError: (hex, err) => {
        const p = nodeProblems.get(hex) ?? { err, points: new Set<string>() };
        p.points.add(point.id);
        nodeProblems.set(hex, p);
      },
    });
  }
  for (const [hex, p] of nodeProblems) {
    problems.push({
      object: chunkKey(hex),
      kind: isMissing(p.err) ? "missing" : "corrupt",
      what: "index-node",
      message: (p.err as Error).message,
      points: [...p.points],
    });
  }
  const ids = [...chunkUsers.keys()];
  let next = 0;
  const check = async (): Promise<void> => {
    while (next < ids.length) {
      opts.signal?.throwIfAborted();
      const hex = ids[next++]!;
      const key = chunkKey(hex);
      try {
        if (opts.readData) {
          const blob = await repo.getObject(key, "chunk");
          await repo.pool.decode([{ kind: BlobKind.Data, id: idFromHex(hex), blob, what: key }]);
        } else {
          const st = await repo.backend.stat(key);
          if (!st) throw new BulwarkError("BULWARK_REPO_CHUNK_MISSING", `chunk ${key} is missing`);
          if (st.size < BLOB_OVERHEAD)
            throw new BulwarkError("BULWARK_REPO_CORRUPT", `${key}: shorter than a blob header`);
        }
      } catch (err) {
        if (
          !(err instanceof BulwarkError) ||
          ![
            "BULWARK_REPO_CHUNK_MISSING",
            "BULWARK_REPO_CORRUPT",
            "BULWARK_REPO_UNSUPPORTED_VERSION",
          ].includes(err.code)
        ) {
          throw err;
        }
        problems.push({
          object: key,
          kind: isMissing(err) ? "missing" : "corrupt",
          what: "chunk",
          message: err.message,
          points: chunkUsers.get(hex)!,
        });
      }
    }
  };
  await Promise.all(Array.from({ length: READ_CONCURRENCY }, check));
  // A point pruned while we ran is not broken: report only points that still exist.
  const brokenSet = new Set(problems.flatMap((p) => p.points));
  for (const id of [...brokenSet]) if (!(await repo.pointExists(id))) brokenSet.delete(id);
  for (const p of problems) p.points = p.points.filter((id) => brokenSet.has(id)).sort();
  const real = problems.filter((p) => p.points.length > 0);
  real.sort((a, b) => a.object.localeCompare(b.object));
  return {
    ok: real.length === 0,
    points: points.length + broken.length,
    nodes,
    chunks: ids.length,
    readData: !!opts.readData,
    problems: real,
    brokenPoints: [...brokenSet].sort(),
  };
}

function isMissing(err: unknown): boolean {
  return err instanceof BulwarkError && err.code === "BULWARK_REPO_CHUNK_MISSING";
}
