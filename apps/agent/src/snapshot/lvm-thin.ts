import { clipRanges } from "@bulwark/filesystems";
import { runChecked } from "../command-runner.js";
import { agentError } from "../errors.js";
import type { JournalEntry } from "./journal.js";
import { removeIfPresent, removeLeftovers } from "./lvm.js";
import {
  BULWARK_LV_TAG,
  checkLvmName,
  dmName,
  LVM_THIN_SNAPSHOT_PREFIX,
  lvremove,
  lvs,
  lvsBytes,
  snapshotName,
} from "./lvm-commands.js";
import { BaseSnapshot, type ChangedRanges, type ProviderContext, type SnapshotProvider } from "./provider.js";
import { parseThinDelta } from "./thin-delta.js";

export interface LvmThinProviderOptions {
  vg: string;
  /** The thin volume being backed up. */
  lv: string;
}

/**
 * Thin snapshot (no -L: it shares the pool). The snapshot of the last committed backup is kept, and
 * thin_delta between it and the new one lists exactly the blocks written since, from the pool's
 * metadata: changed-block tracking on stock Linux, no kernel module.
 */
export class LvmThinProvider implements SnapshotProvider {
  readonly kind = "lvm-thin" as const;

  constructor(
    private readonly ctx: ProviderContext,
    private readonly options: LvmThinProviderOptions,
  ) {
    checkLvmName(options.vg, "volume group");
    checkLvmName(options.lv, "logical volume");
  }

  async prepare(volumeKey: string): Promise<LvmThinSnapshot> {
    const { vg, lv } = this.options;
    await removeLeftovers(this.ctx, this.kind, volumeKey, cleanupStaleLvmThin);
    const name = snapshotName(LVM_THIN_SNAPSHOT_PREFIX, lv);
    const base = (await this.ctx.journal.list()).find(
      (e) =>
        e.provider === this.kind &&
        e.retained &&
        e.volumeKey === volumeKey &&
        e.data.vg === vg &&
        e.data.origin === lv,
    );
    const entry = await this.ctx.journal.add({
      provider: this.kind,
      volumeKey,
      retained: false,
      data: { vg, lv: name, origin: lv },
    });
    const snapshot = new LvmThinSnapshot(this.ctx, entry.id, vg, lv, name, base);
    try {
      await snapshot.create(() =>
        runChecked(this.ctx.runner, {
          command: "lvcreate",
          args: ["-s", "-n", name, "--addtag", BULWARK_LV_TAG, `${vg}/${lv}`],
        }),
      );
      // Thin snapshots are created with the activation-skip flag; -K overrides it for this activation.
      await runChecked(this.ctx.runner, { command: "lvchange", args: ["-ay", "-K", `${vg}/${name}`] });
      const [row] = await lvs(
        this.ctx.runner,
        ["lv_name", "vg_name", "lv_size", "pool_lv", "thin_id"],
        [`${vg}/${name}`],
      );
      if (!row?.pool_lv)
        throw agentError("BULWARK_AGENT_SNAPSHOT_FAILED", `${vg}/${lv} is not a thin volume`);
      const [pool] = await lvs(
        this.ctx.runner,
        ["lv_name", "vg_name", "chunk_size"],
        [`${vg}/${row.pool_lv}`],
      );
      snapshot.setGeometry({
        size: lvsBytes(row.lv_size, "lv_size"),
        thinId: lvsBytes(row.thin_id, "thin_id"),
        pool: row.pool_lv,
        chunkBytes: lvsBytes(pool?.chunk_size, "chunk_size"),
      });
      await this.ctx.journal.update(entry.id, {
        data: { thinId: String(snapshot.thinId), pool: row.pool_lv },
      });
    } catch (err) {
      await snapshot.release().catch(() => {});
      throw agentError(
        "BULWARK_AGENT_SNAPSHOT_FAILED",
        `thin snapshot of ${vg}/${lv} failed`,
        { vg, lv },
        err,
      );
    }
    return snapshot;
  }

  cleanupStale(entry: JournalEntry): Promise<void> {
    return cleanupStaleLvmThin(this.ctx, entry);
  }
}

/** Unretained thin snapshots of a killed run are removed; retained bases are kept for CBT. */
export async function cleanupStaleLvmThin(ctx: ProviderContext, entry: JournalEntry): Promise<void> {
  if (entry.retained) return;
  const { vg, lv } = entry.data;
  if (vg && lv) await removeIfPresent(ctx.runner, vg, lv);
  await ctx.journal.remove(entry.id);
}

interface ThinGeometry {
  size: number;
  thinId: number;
  pool: string;
  chunkBytes: number;
}

export class LvmThinSnapshot extends BaseSnapshot {
  readonly provider = "lvm-thin" as const;
  readonly consistency = "snapshot" as const;
  readonly devicePath: string;
  private exists = false;
  private creation: Promise<void> | undefined;
  private committed = false;
  private geometry: ThinGeometry | undefined;
  private baseGone = false;
  changeTrackingLost: string | undefined;

  constructor(
    ctx: ProviderContext,
    journalId: string,
    readonly vg: string,
    readonly origin: string,
    readonly name: string,
    private readonly base: JournalEntry | undefined,
  ) {
    super(ctx, journalId);
    this.devicePath = `/dev/${vg}/${name}`;
  }

  get size(): number {
    return this.geometry?.size ?? 0;
  }

  get thinId(): number | undefined {
    return this.geometry?.thinId;
  }

  /** lvcreate with the snapshot already registered for SIGTERM (see LvmSnapshot.create). */
  async create(lvcreate: () => Promise<unknown>): Promise<void> {
    this.track(`thin snapshot ${this.vg}/${this.name}`);
    this.creation = lvcreate().then(() => {
      this.exists = true;
    });
    await this.creation;
  }

  setGeometry(geometry: ThinGeometry): void {
    this.geometry = geometry;
  }

  /**
   * thin_delta against the retained base. The pool's live metadata changes under us, so it reads a
   * metadata snapshot reserved for the purpose and always released afterwards.
   */
  override async changedRanges(): Promise<ChangedRanges | undefined> {
    const geometry = this.geometry;
    const baseId = Number(this.base?.data.thinId);
    if (!geometry || !this.base || !Number.isSafeInteger(baseId)) return undefined;
    if (this.base.data.pool !== geometry.pool) {
      this.changeTrackingLost = `the kept base ${this.vg}/${this.base.data.lv} is in pool ${this.base.data.pool}, the volume now in ${geometry.pool}: no thin_delta, hashing instead`;
      return undefined;
    }
    // The base may have been removed by an admin, or recreated with another thin id: then there is
    // nothing valid to compare with, and the backup hashes everything instead of failing.
    const [baseRow] = await lvs(
      this.ctx.runner,
      ["lv_name", "vg_name", "thin_id"],
      [`${this.vg}/${this.base.data.lv}`],
    ).catch(() => []);
    if (!baseRow || baseRow.thin_id !== String(baseId)) {
      await this.ctx.journal.remove(this.base.id);
      this.baseGone = true;
      this.changeTrackingLost = `the kept base snapshot ${this.vg}/${this.base.data.lv} (thin id ${baseId}) is ${baseRow ? `now thin id ${baseRow.thin_id}` : "gone"}: no thin_delta, hashing instead`;
      return undefined;
    }
    const tpool = `${dmName(this.vg, geometry.pool)}-tpool`;
    const tmeta = `/dev/mapper/${dmName(this.vg, geometry.pool)}_tmeta`;
    const runner = this.ctx.runner;
    await runChecked(runner, { command: "dmsetup", args: ["message", tpool, "0", "reserve_metadata_snap"] });
    // The pool has one metadata snapshot: one left reserved by an agent stopped here would make every
    // later thin_delta of the pool fail. Registered after the snapshot, so released before it.
    let metadataReleased: Promise<unknown> | undefined;
    const releaseMetadata = () => {
      metadataReleased ??= runChecked(runner, {
        command: "dmsetup",
        args: ["message", tpool, "0", "release_metadata_snap"],
      });
      return metadataReleased;
    };
    const unregister = this.ctx.releases.register(
      `metadata snapshot of pool ${this.vg}/${geometry.pool}`,
      () => releaseMetadata().then(() => {}),
    );
    let xml: string;
    try {
      const result = await runChecked(runner, {
        command: "thin_delta",
        args: ["--metadata-snap", "--snap1", String(baseId), "--snap2", String(geometry.thinId), tmeta],
      });
      xml = result.stdout;
    } finally {
      try {
        await releaseMetadata();
      } finally {
        unregister();
      }
    }
    const delta = parseThinDelta(xml);
    if (delta.blockBytes !== geometry.chunkBytes) {
      throw agentError(
        "BULWARK_AGENT_COMMAND_OUTPUT_INVALID",
        `thin_delta block size ${delta.blockBytes} differs from the pool chunk size ${geometry.chunkBytes}`,
      );
    }
    return { baseSnapshot: this.base.data.lv ?? "", changed: clipRanges(delta.changed, geometry.size) };
  }

  /** Keep this snapshot (inactive) as the next base; the old base has served its purpose. */
  override async markCommitted(): Promise<void> {
    if (this.committed) return;
    await this.ctx.journal.update(this.journalId, { retained: true });
    this.committed = true;
    if (this.base?.data.vg && this.base.data.lv && !this.baseGone) {
      await removeIfPresent(this.ctx.runner, this.base.data.vg, this.base.data.lv);
      await this.ctx.journal.remove(this.base.id);
    }
  }

  protected async doRelease(): Promise<void> {
    await this.creation?.catch(() => {});
    if (!this.exists) {
      await this.ctx.journal.remove(this.journalId);
      return;
    }
    if (this.committed) {
      await runChecked(this.ctx.runner, { command: "lvchange", args: ["-an", `${this.vg}/${this.name}`] });
    } else {
      // Failed or aborted backup: drop the new snapshot, keep the previous base for the next try.
      await lvremove(this.ctx.runner, this.vg, this.name);
      this.exists = false;
      await this.ctx.journal.remove(this.journalId);
    }
  }
}
