import { createHash } from "node:crypto";
import { mkdir, open, readFile, rename } from "node:fs/promises";
import { dirname, join } from "node:path";

/**
 * What the agent remembers per volume between runs, next to the index cache:
 * - `last`: the committed restore point the cache describes (sent as previous_restore_point_id);
 * - `open`: the session of a backup that has not committed yet, so a run after a crash (SIGKILL,
 *   power loss) resumes it by its token under the same job instead of colliding with it.
 * Losing or damaging this file costs only a full hash (and a fresh session); it is never trusted
 * for correctness: the server validates the previous index and the resume token.
 */
export interface VolumeState {
  volumeKey: string;
  last?: {
    repositoryId: string;
    restorePointId: string;
    /**
     * Chunks that backup left unread as unused per the filesystem bitmap, as [first, count] runs.
     * Its index records them as zero like chunks read and found all-zero; only these must be read
     * again by a CBT incremental once in use (a zero chunk read back then is carried as is).
     */
    unused?: [number, number][];
  };
  open?: { jobId: string; sessionId: string; resumeToken: string };
}

export function volumeStatePath(stateDir: string, volumeKey: string): string {
  const name = createHash("sha256").update(volumeKey).digest("hex").slice(0, 32);
  return join(stateDir, "volumes", `${name}.json`);
}

export async function loadVolumeState(path: string, volumeKey: string): Promise<VolumeState> {
  try {
    const parsed = JSON.parse(await readFile(path, "utf8")) as Partial<VolumeState>;
    if (parsed.volumeKey !== volumeKey) return { volumeKey };
    const state: VolumeState = { volumeKey };
    const last = parsed.last;
    if (last && typeof last.repositoryId === "string" && typeof last.restorePointId === "string") {
      state.last = { repositoryId: last.repositoryId, restorePointId: last.restorePointId };
      // Anything malformed drops the runs: the caller then re-reads every zero chunk (safe).
      if (
        Array.isArray(last.unused) &&
        last.unused.every(
          (r) => Array.isArray(r) && r.length === 2 && r.every((n) => Number.isSafeInteger(n) && n >= 0),
        )
      )
        state.last.unused = last.unused;
    }
    const o = parsed.open;
    if (
      o &&
      typeof o.jobId === "string" &&
      typeof o.sessionId === "string" &&
      typeof o.resumeToken === "string"
    )
      state.open = o;
    return state;
  } catch {
    return { volumeKey }; // Missing or damaged: start from nothing (see above).
  }
}

/** Atomic: temp file, fsync, rename, directory fsync. */
export async function saveVolumeState(path: string, state: VolumeState): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const handle = await open(tmp, "w", 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(state, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * The repository a cache belongs to, derived from the chunk-ID key the server hands out (one key
 * per repository), since BeginSession names no repository ID. Only a hash of the key is stored.
 */
export function repositoryFingerprint(idKey: Buffer): string {
  return `idkey-sha256:${createHash("sha256").update(idKey).digest("hex").slice(0, 32)}`;
}
