import { stat } from "node:fs/promises";
import { FileByteSource, sourceSize } from "@bulwark/filesystems";
import { runChecked } from "../command-runner.js";
import { agentError, invalidArgument } from "../errors.js";
import type { JournalEntry } from "./journal.js";
import { mountPointsOf } from "./mounts.js";
import { BaseSnapshot, type Consistency, type ProviderContext, type SnapshotProvider } from "./provider.js";

/**
 * A frozen filesystem blocks every writer on it; past this the agent thaws on its own and marks the
 * read inconsistent rather than hang the machine's applications.
 */
export const DEFAULT_MAX_FREEZE_MS = 10 * 60_000;

export interface DeviceProviderOptions {
  devicePath: string;
  /** Mount point to hold with `fsfreeze -f` from prepare to release (consistent read of a mounted fs). */
  freeze?: string;
  maxFreezeMs?: number;
}

/** Reads a block or loop device as it is; consistency comes from freezing it or it being unmounted. */
export class DeviceProvider implements SnapshotProvider {
  readonly kind = "device" as const;

  constructor(
    private readonly ctx: ProviderContext,
    private readonly options: DeviceProviderOptions,
  ) {}

  async prepare(volumeKey: string): Promise<DeviceSnapshot> {
    const { devicePath, freeze } = this.options;
    const st = await stat(devicePath).catch((e: unknown) => {
      throw agentError("BULWARK_AGENT_SNAPSHOT_FAILED", `cannot stat ${devicePath}: ${(e as Error).message}`);
    });
    if (!st.isBlockDevice())
      throw invalidArgument(`${devicePath} is not a block device (use the file provider)`);
    const probe = await FileByteSource.open(devicePath);
    const size = sourceSize(probe);
    await probe.close();
    const mounts = await mountPointsOf(devicePath);
    if (freeze && !mounts.includes(freeze)) {
      throw invalidArgument(`${freeze} is not a mount point of ${devicePath}`, { mounts });
    }
    const consistency: Consistency = freeze ? "frozen" : mounts.length === 0 ? "unmounted" : "none";
    const entry = await this.ctx.journal.add({
      provider: this.kind,
      volumeKey,
      retained: false,
      data: freeze ? { devicePath, freeze } : { devicePath },
    });
    const snapshot = new DeviceSnapshot(this.ctx, entry.id, devicePath, size, consistency, freeze);
    try {
      await snapshot.start(this.options.maxFreezeMs ?? DEFAULT_MAX_FREEZE_MS);
    } catch (err) {
      await snapshot.release().catch(() => {});
      throw err;
    }
    return snapshot;
  }

  cleanupStale(entry: JournalEntry): Promise<void> {
    return cleanupStaleDevice(this.ctx, entry);
  }
}

/** A killed run may have left the filesystem frozen: thaw it (EINVAL "not frozen" is fine). */
export async function cleanupStaleDevice(ctx: ProviderContext, entry: JournalEntry): Promise<void> {
  if (entry.data.freeze) await ctx.runner.run({ command: "fsfreeze", args: ["-u", entry.data.freeze] });
  await ctx.journal.remove(entry.id);
}

export class DeviceSnapshot extends BaseSnapshot {
  readonly provider = "device" as const;
  private frozen = false;
  private expired = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    ctx: ProviderContext,
    journalId: string,
    readonly devicePath: string,
    readonly size: number,
    readonly consistency: Consistency,
    private readonly freezeMount: string | undefined,
  ) {
    super(ctx, journalId);
  }

  async start(maxFreezeMs: number): Promise<void> {
    this.track(`device ${this.devicePath}`);
    if (!this.freezeMount) return;
    await runChecked(this.ctx.runner, { command: "fsfreeze", args: ["-f", this.freezeMount] });
    this.frozen = true;
    this.timer = setTimeout(() => {
      this.expired = true;
      void this.thaw();
    }, maxFreezeMs);
    this.timer.unref();
  }

  private async thaw(): Promise<void> {
    if (!this.frozen || !this.freezeMount) return;
    this.frozen = false;
    await runChecked(this.ctx.runner, { command: "fsfreeze", args: ["-u", this.freezeMount] });
  }

  override async assertConsistent(): Promise<void> {
    if (this.expired) {
      throw agentError(
        "BULWARK_AGENT_SNAPSHOT_INCONSISTENT",
        `${this.freezeMount} was thawed after the freeze limit while it was still being read`,
      );
    }
  }

  protected async doRelease(): Promise<void> {
    clearTimeout(this.timer);
    await this.thaw();
    await this.ctx.journal.remove(this.journalId);
  }
}
