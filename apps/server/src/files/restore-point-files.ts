// File-level restore on the server: a restore point's image read by random access from the
// repository (PointReader), its partition table and filesystems parsed in userspace
// (@bulwark/filesystems). Nothing is mounted and no agent is involved.
//
// Opening a point reads its index root, the partition table and each filesystem's superblock; a
// help-desk user browsing one directory after another would pay that on every click, and lose the
// reader's chunk cache. So opened points are kept for a short idle time, a few at a time.
//
// An open point is pinned like an NBD export (catalog ExportPin, docs/jobs.md "Prune"): prune keeps
// it and GC its chunks while someone browses or downloads, so reads never fail half-way because
// retention removed the point. Callers hold a lease for as long as they read (a download: until
// its response has ended). A leased point is never closed, and its pin is renewed on a timer for
// as long as the lease lasts; a point nobody holds is closed after the idle time, or when its slot
// is needed. The pin is removed when the point closes and when the node shuts down; a node that
// dies leaves pins that stop counting at their expiresAt, at most OPEN_POINT_PIN_MS later.

import { hostname } from "node:os";
import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import { type FileSystemReader, openVolume, type Volume } from "@bulwark/filesystems";
import { PointReader } from "@bulwark/repository";
import type { Logger } from "pino";
import { pinBackup, renewPin } from "../exports/pins.js";
import type { RepositoryRegistry } from "../repositories/registry.js";

/** Restore points kept open per node: each holds a chunk cache (a few MiB), so only a handful. */
export const OPEN_POINTS_MAX = 8;
/** A point nobody browsed for this long is closed; long enough for a person clicking through. */
export const OPEN_POINT_IDLE_MS = 5 * 60_000;
/** A pin's life after the last use or renewal: the idle time, plus a minute of margin. */
export const OPEN_POINT_PIN_MS = OPEN_POINT_IDLE_MS + 60_000;
/** How often leased points' pins are renewed and idle points closed: well inside the pin's life. */
export const OPEN_POINT_SWEEP_MS = 60_000;

interface OpenPoint {
  volume: Volume;
  filesystems: Map<number, Promise<FileSystemReader>>;
}

/** A cache entry; created synchronously, so that a lease counts before the point has opened. */
interface Slot {
  point: Promise<OpenPoint>;
  /** Leases not yet released. A slot with users is never closed. */
  users: number;
  lastUsed: number;
  /** The ExportPin row that keeps prune away (set once pinned), and until when it holds. */
  pinId?: string;
  pinnedUntil: number;
}

export interface RestorePointFilesOptions {
  catalog: Catalog;
  repositories: RepositoryRegistry;
  now?: () => number;
  /** This node's name, recorded on the pins (default: the host name). */
  node?: string;
  /** Points kept open at once (default OPEN_POINTS_MAX). */
  maxOpen?: number;
  /** Period of the pin renewal and idle sweep (default OPEN_POINT_SWEEP_MS). */
  sweepMs?: number;
  log?: Pick<Logger, "warn">;
}

export interface OpenedFilesystem {
  partition: number;
  reader: FileSystemReader;
}

/** One caller's hold on an open restore point; release it once nothing more will be read. */
export interface RestorePointLease {
  volume: Volume;
  /**
   * The filesystem of one partition. Without `partition`, the only partition holding a filesystem
   * Bulwark reads is chosen; with several, the caller must say which.
   */
  filesystem(partition?: number): Promise<OpenedFilesystem>;
  /** Idempotent. */
  release(): void;
}

export class RestorePointFiles {
  private readonly open = new Map<string, Slot>();
  private readonly now: () => number;
  private readonly maxOpen: number;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly opts: RestorePointFilesOptions) {
    this.now = opts.now ?? Date.now;
    this.maxOpen = opts.maxOpen ?? OPEN_POINTS_MAX;
    this.sweeper = setInterval(() => void this.sweep(), opts.sweepMs ?? OPEN_POINT_SWEEP_MS);
    this.sweeper.unref();
  }

  /**
   * Opens (or reuses) a tenant's AVAILABLE restore point and holds it until `release()`. When every
   * slot is held by a lease, a point not yet open is refused with BULWARK_API_FILES_BUSY.
   */
  async lease(tenantId: string, backupId: string): Promise<RestorePointLease> {
    if (this.closed) {
      throw new BulwarkError("BULWARK_API_FILES_BUSY", "file-level restore is shutting down on this node");
    }
    const row = await this.opts.catalog.backup.findFirst({
      where: { id: backupId, tenantId },
      select: { id: true, status: true, repositoryId: true, indexRef: true },
    });
    if (!row) {
      throw new BulwarkError("BULWARK_API_NOT_FOUND", `no backup ${backupId}`, { details: { backupId } });
    }
    if (row.status !== "AVAILABLE") {
      throw new BulwarkError(
        "BULWARK_API_INVALID_STATE",
        `backup ${backupId} is ${row.status}, not AVAILABLE`,
        {
          details: { backupId, status: row.status },
        },
      );
    }
    this.closeIdle();
    let slot = this.open.get(row.id);
    if (!slot) {
      this.makeRoom();
      const fresh: Slot = { point: undefined as never, users: 0, lastUsed: this.now(), pinnedUntil: 0 };
      fresh.point = this.openPoint(row, fresh);
      fresh.point.catch(() => {
        if (this.open.get(row.id) === fresh) this.open.delete(row.id);
      });
      slot = fresh;
    }
    // Map order is insertion order: re-inserting keeps the least recently used first.
    this.open.delete(row.id);
    this.open.set(row.id, slot);
    slot.users++;
    const held = slot;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      held.users--;
      held.lastUsed = this.now();
    };
    try {
      const point = await held.point;
      held.lastUsed = this.now();
      if (held.pinnedUntil - held.lastUsed < OPEN_POINT_PIN_MS / 2) await this.renew(held, row.id);
      return {
        volume: point.volume,
        filesystem: (partition) => this.filesystemOf(point, row.id, partition),
        release,
      };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** The layout (partition table and filesystems) of a tenant's AVAILABLE restore point. */
  async volume(tenantId: string, backupId: string): Promise<Volume> {
    const lease = await this.lease(tenantId, backupId);
    lease.release();
    return lease.volume;
  }

  /**
   * A filesystem of a restore point, without a lease: for a caller that is done reading well
   * within the idle time. Long reads (downloads) take a lease().
   */
  async filesystem(tenantId: string, backupId: string, partition?: number): Promise<OpenedFilesystem> {
    const lease = await this.lease(tenantId, backupId);
    try {
      return await lease.filesystem(partition);
    } finally {
      lease.release();
    }
  }

  /** Node shutdown: no new leases, and every pin this instance holds is removed. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    const slots = [...this.open.values()];
    this.open.clear();
    // A point still opening pins itself first: wait for it, so its pin goes too.
    await Promise.all(slots.map((s) => s.point.catch(() => undefined)));
    const ids = slots.map((s) => s.pinId).filter((id): id is string => id !== undefined);
    if (!ids.length) return;
    try {
      await this.opts.catalog.exportPin.deleteMany({ where: { id: { in: ids } } });
    } catch (err) {
      // The shutdown goes on: these pins stop counting at their expiresAt.
      this.opts.log?.warn({ pins: ids.length, err: (err as Error).message }, "file restore pins not removed");
    }
  }

  /** Closes idle points and renews the pins of held ones; run on a timer. */
  async sweep(): Promise<void> {
    this.closeIdle();
    await Promise.all([...this.open].filter(([, s]) => s.users > 0).map(([id, s]) => this.renew(s, id)));
  }

  private async filesystemOf(
    point: OpenPoint,
    backupId: string,
    partition?: number,
  ): Promise<OpenedFilesystem> {
    const number = partition ?? defaultPartition(point.volume, backupId);
    let reader = point.filesystems.get(number);
    if (!reader) {
      reader = point.volume.openPartition(number);
      point.filesystems.set(number, reader);
      reader.catch(() => point.filesystems.delete(number));
    }
    return { partition: number, reader: await reader };
  }

  /** Frees a slot for a new point by closing the least recently used one that nobody holds. */
  private makeRoom(): void {
    if (this.open.size < this.maxOpen) return;
    for (const [id, slot] of this.open) {
      if (slot.users === 0) {
        this.closeSlot(id, slot);
        return;
      }
    }
    throw new BulwarkError(
      "BULWARK_API_FILES_BUSY",
      `all ${this.maxOpen} restore points this node keeps open for file-level restore are in use; retry when a download has finished`,
      { details: { maxOpen: this.maxOpen } },
    );
  }

  private closeIdle(): void {
    const cutoff = this.now() - OPEN_POINT_IDLE_MS;
    for (const [id, slot] of this.open) {
      if (slot.users === 0 && slot.lastUsed < cutoff) this.closeSlot(id, slot);
    }
  }

  /** Unpins a point leaving the cache (best effort: a pin left behind ends at its expiresAt). */
  private closeSlot(id: string, slot: Slot): void {
    this.open.delete(id);
    void slot.point.then(
      () => this.unpin(slot.pinId),
      () => undefined,
    );
  }

  /** Pins the point (refused once it is DELETING), then opens it; the pin goes if opening fails. */
  private async openPoint(
    row: { id: string; repositoryId: string; indexRef: string },
    slot: Slot,
  ): Promise<OpenPoint> {
    const pinnedUntil = this.now() + OPEN_POINT_PIN_MS;
    // The lock in pinBackup orders this against prune marking the point DELETING (as for NBD exports).
    const pinId = await pinBackup(
      this.opts.catalog,
      row.id,
      this.opts.node ?? hostname(),
      new Date(pinnedUntil),
    );
    if (!pinId) {
      throw new BulwarkError("BULWARK_API_INVALID_STATE", `backup ${row.id} is being deleted`, {
        details: { backupId: row.id },
      });
    }
    slot.pinId = pinId;
    slot.pinnedUntil = pinnedUntil;
    try {
      const { repo } = await this.opts.repositories.get(row.repositoryId);
      const reader = new PointReader(repo, await repo.readPoint(row.indexRef));
      return { volume: await openVolume(reader), filesystems: new Map() };
    } catch (err) {
      await this.unpin(pinId);
      throw err;
    }
  }

  private async renew(slot: Slot, backupId: string): Promise<void> {
    if (!slot.pinId) return;
    const until = this.now() + OPEN_POINT_PIN_MS;
    try {
      if (!(await renewPin(this.opts.catalog, slot.pinId, new Date(until)))) {
        // Gone: renewals failed for a whole pin life and a prune removed the expired row. Pin the
        // point again if prune has not claimed it; otherwise no new lease may use it.
        const again = await pinBackup(
          this.opts.catalog,
          backupId,
          this.opts.node ?? hostname(),
          new Date(until),
        );
        if (!again) {
          this.opts.log?.warn({ backup: backupId }, "file restore point lost its pin and is being deleted");
          if (this.open.get(backupId) === slot) this.open.delete(backupId);
          return;
        }
        slot.pinId = again;
      }
      slot.pinnedUntil = until;
    } catch (err) {
      // The next sweep tries again; the pin still holds until its current expiresAt.
      this.opts.log?.warn({ pin: slot.pinId, err: (err as Error).message }, "file restore pin not renewed");
    }
  }

  private async unpin(pinId: string | undefined): Promise<void> {
    if (!pinId) return;
    try {
      await this.opts.catalog.exportPin.deleteMany({ where: { id: pinId } });
    } catch (err) {
      this.opts.log?.warn({ pin: pinId, err: (err as Error).message }, "file restore pin not removed");
    }
  }
}

function defaultPartition(volume: Volume, backupId: string): number {
  const readable = volume.partitions.filter((p) => p.filesystem !== "unknown");
  if (readable.length === 1) return readable[0]!.number;
  throw new BulwarkError(
    readable.length === 0 ? "BULWARK_FS_NOT_RECOGNISED" : "BULWARK_GENERAL_VALIDATION",
    readable.length === 0
      ? `restore point ${backupId} holds no ext4, NTFS or FAT filesystem`
      : `restore point ${backupId} holds ${readable.length} filesystems: name one with ?partition=N`,
    { details: { partitions: readable.map((p) => ({ number: p.number, filesystem: p.filesystem })) } },
  );
}
