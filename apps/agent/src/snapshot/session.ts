import { agentError } from "../errors.js";
import { cleanupStaleDevice } from "./device.js";
import { cleanupStaleFile } from "./file.js";
import { type Hooks, runHook } from "./hooks.js";
import type { JournalEntry } from "./journal.js";
import { cleanupStaleLvm } from "./lvm.js";
import { BULWARK_LV_TAG, lvremove, taggedLvs } from "./lvm-commands.js";
import { cleanupStaleLvmThin } from "./lvm-thin.js";
import type { ProviderContext, ProviderKind, Snapshot, SnapshotProvider } from "./provider.js";
import { cleanupStaleVss } from "./vss.js";

const STALE_CLEANERS: Record<ProviderKind, (ctx: ProviderContext, entry: JournalEntry) => Promise<void>> = {
  device: cleanupStaleDevice,
  file: cleanupStaleFile,
  lvm: cleanupStaleLvm,
  "lvm-thin": cleanupStaleLvmThin,
  vss: cleanupStaleVss,
};

export interface SnapshotSessionResult<T> {
  value: T;
  /** Problems that did not fail the backup (post hook failed, …), for the job report. */
  warnings: string[];
}

/**
 * The whole life of one snapshot: pre hook → prepare → post hook → read (the callback) → check
 * consistency → commit hook-in (markCommitted) → release. Release happens on every path; SIGTERM is
 * covered by the release registry the snapshot registered itself in.
 */
export async function withSnapshot<T>(
  ctx: ProviderContext,
  provider: SnapshotProvider,
  volumeKey: string,
  hooks: Hooks,
  read: (snapshot: Snapshot) => Promise<{ value: T; commit: () => Promise<void> }>,
): Promise<SnapshotSessionResult<T>> {
  const warnings: string[] = [];
  const env = { BULWARK_VOLUME: volumeKey, BULWARK_PROVIDER: provider.kind };
  if (hooks.pre) {
    const pre = await runHook(ctx.runner, "pre", hooks.pre, env);
    if (pre.exitCode !== 0) {
      // The application may be half-quiesced: give the post hook its chance to undo that.
      if (hooks.post) await runHook(ctx.runner, "post", hooks.post, { ...env, BULWARK_SNAPSHOT: "failed" });
      throw agentError(
        "BULWARK_AGENT_HOOK_FAILED",
        `pre hook exited ${pre.exitCode}: ${pre.stderr.trim().slice(0, 500)}`,
      );
    }
  }
  let snapshot: Snapshot | undefined;
  try {
    snapshot = await provider.prepare(volumeKey);
  } finally {
    if (hooks.post) {
      const post = await runHook(ctx.runner, "post", hooks.post, {
        ...env,
        BULWARK_SNAPSHOT: snapshot ? "taken" : "failed",
      });
      if (post.exitCode !== 0)
        warnings.push(`post hook exited ${post.exitCode}: ${post.stderr.trim().slice(0, 500)}`);
    }
  }
  try {
    const { value, commit } = await read(snapshot);
    await snapshot.assertConsistent();
    await commit();
    await snapshot.markCommitted();
    return { value, warnings };
  } finally {
    await snapshot.release();
  }
}

/**
 * Run at agent start, before any backup: every journal entry that is not a retained lvm-thin base
 * belongs to a killed run and is released; then LVs carrying the agent's tag that the journal does
 * not know (journal lost) are removed too, except retained bases.
 */
export async function cleanupStaleSnapshots(
  ctx: ProviderContext,
  options: { scanLvm: boolean },
): Promise<{ cleaned: string[]; failed: { id: string; error: string }[] }> {
  const cleaned: string[] = [];
  const failed: { id: string; error: string }[] = [];
  for (const entry of await ctx.journal.list()) {
    if (entry.retained) continue;
    const cleaner = STALE_CLEANERS[entry.provider];
    if (!cleaner) {
      failed.push({ id: entry.id, error: `unknown provider ${entry.provider} in the journal` });
      continue;
    }
    try {
      await cleaner(ctx, entry);
      cleaned.push(
        `${entry.provider}:${entry.data.lv ?? entry.data.shadowId ?? entry.data.freeze ?? entry.id}`,
      );
    } catch (err) {
      failed.push({ id: entry.id, error: (err as Error).message });
    }
  }
  if (options.scanLvm) {
    const keep = new Set(
      (await ctx.journal.list()).filter((e) => e.retained).map((e) => `${e.data.vg}/${e.data.lv}`),
    );
    for (const row of await taggedLvs(ctx.runner)) {
      const key = `${row.vg_name}/${row.lv_name}`;
      if (keep.has(key) || !row.lv_tags?.split(",").includes(BULWARK_LV_TAG)) continue;
      try {
        await lvremove(ctx.runner, row.vg_name, row.lv_name);
        cleaned.push(`lvm-scan:${key}`);
      } catch (err) {
        failed.push({ id: key, error: (err as Error).message });
      }
    }
  }
  return { cleaned, failed };
}
