import { BulwarkError } from "@bulwark/errors";
import { chunkKey } from "./chunk-index.js";
import {
  DEFAULT_GC_GRACE_MS,
  MTIME_SKEW_MARGIN_MS,
  SESSION_STALE_AFTER_MS,
  TEMP_STALE_AFTER_MS,
} from "./constants.js";
import { idFromHex, RECORD_ID } from "./ids.js";
import type { Repository } from "./repository.js";
import { walkTree } from "./walk.js";

/**
 * Garbage collection (spec, "Write ordering and crash safety", GC steps 1–5). Safe beside ingest,
 * verify, prune and restores of points that are not being pruned; run one GC at a time. Killed at
 * any point, it leaves only unreferenced chunks deleted or in trash/, which the next GC settles.
 */
export interface GcOptions {
  /** Unreferenced chunks younger than this are kept (default 24 h). */
  graceMs?: number;
  /** Only report what would be deleted. */
  dryRun?: boolean;
  /** Called before each chunk is condemned (tests use it to interleave an ingest). */
  onCondemn?: (key: string) => Promise<void> | void;
  /**
   * Stops the run between steps (throwing `signal.reason`), as if the process had stopped there:
   * before a point or session is marked, before a chunk is condemned. A sweep that stops still
   * tells the chunk index what it deleted.
   */
  signal?: AbortSignal;
}

export interface GcReport {
  points: number;
  liveSessions: number;
  staleSessionsRemoved: number;
  cutoff: string;
  marked: number;
  scanned: number;
  deleted: number;
  deletedBytes: number;
  keptYoung: number;
  restoredFromTrash: number;
  tempFilesRemoved: number;
  dryRun: boolean;
}

const HEX64 = /^[0-9a-f]{64}$/;

export async function collectGarbage(repo: Repository, opts: GcOptions = {}): Promise<GcReport> {
  const backend = repo.backend;
  const now = repo.clock.now();
  const grace = opts.graceMs ?? DEFAULT_GC_GRACE_MS;
  if (!Number.isFinite(grace) || grace < 0)
    throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", "grace must be ≥ 0");

  // 1. Mark from every restore point. An unreadable record or node could hide live chunks: stop.
  const { points, broken } = await repo.scanPoints();
  if (broken.length) {
    throw new BulwarkError(
      "BULWARK_REPO_CORRUPT",
      `GC refuses to run: ${broken.length} restore point record(s) unreadable`,
      {
        details: { points: broken.map((b) => b.id) },
      },
    );
  }
  const marked = new Set<string>();
  const mark = (root: { volumeSize: number; chunkSize: number; fanout: number; root: string }) =>
    walkTree(repo, root, {
      onNode: (hex) => {
        if (marked.has(hex)) return false;
        marked.add(hex);
        return true;
      },
      onChunk: (hex) => {
        marked.add(hex);
      },
    });
  for (const p of points) {
    opts.signal?.throwIfAborted();
    await mark(p);
  }

  // 2. Then the sessions: their bases, and the oldest start. Dead sessions are removed.
  let oldest = Number.POSITIVE_INFINITY;
  let live = 0;
  let staleRemoved = 0;
  const sessionIds = new Set<string>();
  for await (const key of backend.list("sessions/")) {
    const m = /^sessions\/([0-9a-f]{32})(\.alive)?$/.exec(key);
    if (m && RECORD_ID.test(m[1]!)) sessionIds.add(m[1]!);
  }
  for (const id of sessionIds) {
    opts.signal?.throwIfAborted();
    const rec = await backend.stat(`sessions/${id}`);
    const alive = await backend.stat(`sessions/${id}.alive`);
    const last = Math.max(rec?.mtimeMs ?? 0, alive?.mtimeMs ?? 0);
    if (now - last > SESSION_STALE_AFTER_MS) {
      if (!opts.dryRun) {
        await backend.delete(`sessions/${id}`);
        await backend.delete(`sessions/${id}.alive`);
      }
      staleRemoved++;
      continue;
    }
    if (!rec) continue; // heartbeat of a session that just ended
    live++;
    oldest = Math.min(oldest, rec.mtimeMs);
    let session: Awaited<ReturnType<Repository["readSession"]>>;
    try {
      session = await repo.readSession(id);
    } catch (err) {
      if (err instanceof BulwarkError && err.code === "BULWARK_REPO_NOT_FOUND") continue; // committed meanwhile
      throw err;
    }
    for (const base of session.bases) await mark(base); // a pruned base stays live for its session
  }

  // 3. The cutoff: older than the grace period and than every live session.
  const cutoff = Math.min(now - grace, oldest) - MTIME_SKEW_MARGIN_MS;
  const report: GcReport = {
    points: points.length,
    liveSessions: live,
    staleSessionsRemoved: staleRemoved,
    cutoff: new Date(cutoff).toISOString(),
    marked: marked.size,
    scanned: 0,
    deleted: 0,
    deletedBytes: 0,
    keptYoung: 0,
    restoredFromTrash: 0,
    tempFilesRemoved: 0,
    dryRun: !!opts.dryRun,
  };

  // 4a. Trash left by a crashed GC: restore what is live or young, delete the rest.
  for await (const key of backend.list("trash/")) {
    const hex = key.slice("trash/".length);
    if (!HEX64.test(hex)) continue;
    const st = await backend.stat(key);
    if (!st || opts.dryRun) continue;
    if (marked.has(hex) || st.mtimeMs >= cutoff) {
      if (await backend.rename(key, chunkKey(hex))) report.restoredFromTrash++;
    } else if (await backend.delete(key)) {
      report.deleted++;
      report.deletedBytes += st.size;
    }
  }

  // 4b. Sweep: condemn (rename to trash), re-check the age, then delete or put back.
  const removed: Buffer[] = [];
  opts.signal?.throwIfAborted();
  for await (const key of backend.list("chunks/")) {
    if (opts.signal?.aborted) break;
    const hex = key.slice(key.lastIndexOf("/") + 1);
    if (!HEX64.test(hex) || key !== chunkKey(hex)) continue;
    report.scanned++;
    if (marked.has(hex)) continue;
    const st = await backend.stat(key);
    if (!st) continue;
    if (st.mtimeMs >= cutoff) {
      report.keptYoung++;
      continue;
    }
    if (opts.dryRun) {
      report.deleted++;
      report.deletedBytes += st.size;
      continue;
    }
    await opts.onCondemn?.(key);
    const trash = `trash/${hex}`;
    if (!(await backend.rename(key, trash))) continue;
    const again = await backend.stat(trash);
    if (again && again.mtimeMs >= cutoff) {
      // An ingest touched it between our stat and the rename: it needs it.
      await backend.rename(trash, key);
      report.keptYoung++;
      continue;
    }
    if (await backend.delete(trash)) {
      report.deleted++;
      report.deletedBytes += st.size;
      removed.push(idFromHex(hex));
    }
  }
  if (removed.length) await repo.chunkIndex.removed(removed);
  opts.signal?.throwIfAborted();

  // 5. Temp files of crashed writers.
  if (!opts.dryRun && backend.removeStaleTemp) {
    report.tempFilesRemoved = await backend.removeStaleTemp(now - TEMP_STALE_AFTER_MS);
  }
  return report;
}
