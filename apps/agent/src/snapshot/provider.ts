import type { ByteRange } from "@bulwark/filesystems";
import { FileByteSource } from "@bulwark/filesystems";
import type { CommandRunner } from "../command-runner.js";
import type { JournalEntry, SnapshotJournal } from "./journal.js";
import type { ProviderKind } from "./kinds.js";
import type { ReleaseRegistry } from "./release-registry.js";

export type { ProviderKind } from "./kinds.js";

/** How the image being read is protected from concurrent writes. */
export type Consistency =
  | "snapshot" // copy-on-write snapshot (lvm, lvm-thin, vss): point-in-time, crash-consistent or better
  | "frozen" // fsfreeze held for the whole read
  | "unmounted" // device not mounted anywhere when prepared
  | "unchanged-file" // image file whose size/mtime/inode are checked before and after
  | "none"; // read as is; the caller accepted the risk

/** Changed byte ranges since the previous retained snapshot (lvm-thin's thin_delta). */
export interface ChangedRanges {
  baseSnapshot: string;
  changed: ByteRange[];
}

export interface Snapshot {
  readonly provider: ProviderKind;
  readonly journalId: string;
  /** A path the agent can open read-only: /dev/vg/snap, /dev/loop3, \\?\GLOBALROOT\Device\…. */
  readonly devicePath: string;
  readonly size: number;
  readonly consistency: Consistency;
  /** A read-only byte source over the snapshot; closed by release(). */
  open(): Promise<FileByteSource>;
  /** CBT, when the provider has a base to compare with; undefined means "hash everything". */
  changedRanges(): Promise<ChangedRanges | undefined>;
  /**
   * Set by changedRanges() when change tracking should have been there and was not (a kept base
   * snapshot deleted, a pool recreated): the backup falls back to hashing and says why.
   */
  readonly changeTrackingLost?: string | undefined;
  /** Throws BULWARK_AGENT_SNAPSHOT_INCONSISTENT when the read cannot be trusted (thawed, COW overflow, file changed). */
  assertConsistent(): Promise<void>;
  /** The backup that read this snapshot was committed: lvm-thin keeps it as the next base. */
  markCommitted(): Promise<void>;
  /** Idempotent: thaw / remove / delete, and close opened sources. Runs on success, failure and SIGTERM. */
  release(): Promise<void>;
}

export interface ProviderContext {
  runner: CommandRunner;
  journal: SnapshotJournal;
  releases: ReleaseRegistry;
}

export interface SnapshotProvider {
  readonly kind: ProviderKind;
  prepare(volumeKey: string): Promise<Snapshot>;
  /** Removes what a killed run left behind, given its journal entry. */
  cleanupStale(entry: JournalEntry): Promise<void>;
}

/**
 * Shared bookkeeping: the journal entry, the registry entry for signals, opened sources, and
 * making release() run once even when called from several places at once.
 */
export abstract class BaseSnapshot implements Snapshot {
  abstract readonly provider: ProviderKind;
  abstract readonly devicePath: string;
  abstract readonly size: number;
  abstract readonly consistency: Consistency;
  private readonly sources: FileByteSource[] = [];
  private releasing: Promise<void> | undefined;
  private unregister: (() => void) | undefined;

  constructor(
    protected readonly ctx: ProviderContext,
    readonly journalId: string,
  ) {}

  /** Call once the snapshot exists, so SIGTERM releases it. */
  protected track(label: string): void {
    this.unregister = this.ctx.releases.register(label, () => this.release());
  }

  async open(): Promise<FileByteSource> {
    if (this.releasing) throw new Error("snapshot already released");
    const source = await FileByteSource.open(this.devicePath, this.size);
    this.sources.push(source);
    return source;
  }

  async changedRanges(): Promise<ChangedRanges | undefined> {
    return undefined;
  }

  async assertConsistent(): Promise<void> {}

  async markCommitted(): Promise<void> {}

  release(): Promise<void> {
    this.releasing ??= (async () => {
      for (const s of this.sources.splice(0)) await s.close().catch(() => {});
      await this.doRelease();
      this.unregister?.();
    })().catch((err: unknown) => {
      // Leave the registry entry in place and allow a retry (e.g. lvremove while the LV is busy).
      this.releasing = undefined;
      throw err;
    });
    return this.releasing;
  }

  protected abstract doRelease(): Promise<void>;
}
