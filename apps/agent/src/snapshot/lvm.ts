import { type CommandRunner, runChecked } from "../command-runner.js";
import { agentError } from "../errors.js";
import type { JournalEntry } from "./journal.js";
import {
  BULWARK_LV_TAG,
  checkLvmName,
  checkLvmSize,
  isInvalidSnapshot,
  LVM_SNAPSHOT_PREFIX,
  lvremove,
  lvs,
  lvsBytes,
  snapshotName,
} from "./lvm-commands.js";
import { BaseSnapshot, type ProviderContext, type SnapshotProvider } from "./provider.js";

export interface LvmProviderOptions {
  vg: string;
  lv: string;
  /** Copy-on-write space for writes during the backup (`lvcreate -L`); overflow invalidates the snapshot. */
  cowSize: string;
}

/**
 * Classic LVM copy-on-write snapshot. lvcreate suspends the origin, and device-mapper's suspend
 * freezes a mounted filesystem first, so the snapshot is a clean point-in-time image (ext4's journal
 * is flushed and needs_recovery cleared in it). Removed after every backup.
 */
export class LvmProvider implements SnapshotProvider {
  readonly kind = "lvm" as const;

  constructor(
    private readonly ctx: ProviderContext,
    private readonly options: LvmProviderOptions,
  ) {
    checkLvmName(options.vg, "volume group");
    checkLvmName(options.lv, "logical volume");
    checkLvmSize(options.cowSize);
  }

  async prepare(volumeKey: string): Promise<LvmSnapshot> {
    const { vg, lv, cowSize } = this.options;
    await removeLeftovers(this.ctx, this.kind, volumeKey, cleanupStaleLvm);
    const name = snapshotName(LVM_SNAPSHOT_PREFIX, lv);
    const entry = await this.ctx.journal.add({
      provider: this.kind,
      volumeKey,
      retained: false,
      data: { vg, lv: name },
    });
    const snapshot = new LvmSnapshot(this.ctx, entry.id, vg, name);
    try {
      await snapshot.create(() =>
        runChecked(this.ctx.runner, {
          command: "lvcreate",
          args: ["-s", "-n", name, "-L", cowSize, "--addtag", BULWARK_LV_TAG, `${vg}/${lv}`],
        }),
      );
      const [row] = await lvs(
        this.ctx.runner,
        ["lv_name", "vg_name", "lv_size", "lv_attr"],
        [`${vg}/${name}`],
      );
      snapshot.setSize(lvsBytes(row?.lv_size, "lv_size"));
    } catch (err) {
      await snapshot.release().catch(() => {});
      throw agentError(
        "BULWARK_AGENT_SNAPSHOT_FAILED",
        `LVM snapshot of ${vg}/${lv} failed`,
        { vg, lv },
        err,
      );
    }
    return snapshot;
  }

  cleanupStale(entry: JournalEntry): Promise<void> {
    return cleanupStaleLvm(this.ctx, entry);
  }
}

export async function cleanupStaleLvm(ctx: ProviderContext, entry: JournalEntry): Promise<void> {
  const { vg, lv } = entry.data;
  if (vg && lv) await removeIfPresent(ctx.runner, vg, lv);
  await ctx.journal.remove(entry.id);
}

/**
 * A killed run of this volume's backup left its snapshot and journal entry behind: remove them
 * before taking a new one, so leftovers never fill the VG even if nobody runs `bulwark-agent
 * cleanup`. Safe because one agent never backs up the same volume twice at once. Retained lvm-thin
 * bases are not leftovers.
 */
export async function removeLeftovers(
  ctx: ProviderContext,
  kind: "lvm" | "lvm-thin",
  volumeKey: string,
  cleanup: (ctx: ProviderContext, entry: JournalEntry) => Promise<void>,
): Promise<void> {
  for (const entry of await ctx.journal.list()) {
    if (entry.provider === kind && entry.volumeKey === volumeKey && !entry.retained)
      await cleanup(ctx, entry);
  }
}

/** lvremove, treating "not found" as done: a stale entry may point at a snapshot already gone. */
export async function removeIfPresent(runner: CommandRunner, vg: string, lv: string): Promise<void> {
  const rows = await lvs(runner, ["lv_name", "vg_name"], [`${vg}/${lv}`]).catch(() => []);
  if (rows.length > 0) await lvremove(runner, vg, lv);
}

export class LvmSnapshot extends BaseSnapshot {
  readonly provider = "lvm" as const;
  readonly consistency = "snapshot" as const;
  readonly devicePath: string;
  private exists = false;
  private creation: Promise<void> | undefined;
  private bytes = 0;

  constructor(
    ctx: ProviderContext,
    journalId: string,
    readonly vg: string,
    readonly name: string,
  ) {
    super(ctx, journalId);
    this.devicePath = `/dev/${vg}/${name}`;
  }

  get size(): number {
    return this.bytes;
  }

  setSize(bytes: number): void {
    this.bytes = bytes;
  }

  /**
   * Runs lvcreate with the snapshot already in the release registry: a SIGTERM during lvcreate
   * releases it once lvcreate has ended (the LV may appear at its very end), not never.
   */
  async create(lvcreate: () => Promise<unknown>): Promise<void> {
    this.track(`LVM snapshot ${this.vg}/${this.name}`);
    this.creation = lvcreate().then(() => {
      this.exists = true;
    });
    await this.creation;
  }

  /** A COW snapshot that overflowed during the read returns I/O errors or stale data: never commit it. */
  override async assertConsistent(): Promise<void> {
    const [row] = await lvs(
      this.ctx.runner,
      ["lv_name", "vg_name", "lv_attr", "data_percent"],
      [`${this.vg}/${this.name}`],
    );
    if (!row || isInvalidSnapshot(row.lv_attr) || Number(row.data_percent) >= 100) {
      throw agentError(
        "BULWARK_AGENT_SNAPSHOT_INCONSISTENT",
        `LVM snapshot ${this.vg}/${this.name} overflowed its copy-on-write space; use a larger cowSize`,
      );
    }
  }

  protected async doRelease(): Promise<void> {
    await this.creation?.catch(() => {});
    if (this.exists) await lvremove(this.ctx.runner, this.vg, this.name);
    this.exists = false;
    await this.ctx.journal.remove(this.journalId);
  }
}
