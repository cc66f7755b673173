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
// retention removed the point. The pin outlives the last use by the idle time plus a margin, is
// renewed as the point is used, and removed when the point is closed.

import { hostname } from "node:os";
import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import { type FileSystemReader, openVolume, type Volume } from "@bulwark/filesystems";
import { PointReader } from "@bulwark/repository";
import type { RepositoryRegistry } from "../repositories/registry.js";

/** Restore points kept open per node: each holds a chunk cache (a few MiB), so only a handful. */
export const OPEN_POINTS_MAX = 8;
/** A point nobody browsed for this long is closed; long enough for a person clicking through. */
export const OPEN_POINT_IDLE_MS = 5 * 60_000;
/** A pin's life after the last use: the idle time, plus a minute for a download still streaming. */
export const OPEN_POINT_PIN_MS = OPEN_POINT_IDLE_MS + 60_000;

interface OpenPoint {
  volume: Volume;
  filesystems: Map<number, Promise<FileSystemReader>>;
  lastUsed: number;
  /** The ExportPin row that keeps prune away, and until when it holds. */
  pinId: string;
  pinnedUntil: number;
}

export interface RestorePointFilesOptions {
  catalog: Catalog;
  repositories: RepositoryRegistry;
  now?: () => number;
  /** This node's name, recorded on the pins (default: the host name). */
  node?: string;
}

export interface OpenedFilesystem {
  partition: number;
  reader: FileSystemReader;
}

export class RestorePointFiles {
  private readonly open = new Map<string, Promise<OpenPoint>>();
  private readonly now: () => number;

  constructor(private readonly opts: RestorePointFilesOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** The layout (partition table and filesystems) of a tenant's AVAILABLE restore point. */
  async volume(tenantId: string, backupId: string): Promise<Volume> {
    return (await this.point(tenantId, backupId)).volume;
  }

  /**
   * The filesystem of one partition. Without `partition`, the only partition holding a filesystem
   * Bulwark reads is chosen; with several, the caller must say which.
   */
  async filesystem(tenantId: string, backupId: string, partition?: number): Promise<OpenedFilesystem> {
    const point = await this.point(tenantId, backupId);
    const number = partition ?? defaultPartition(point.volume, backupId);
    let reader = point.filesystems.get(number);
    if (!reader) {
      reader = point.volume.openPartition(number);
      point.filesystems.set(number, reader);
      reader.catch(() => point.filesystems.delete(number));
    }
    return { partition: number, reader: await reader };
  }

  private async point(tenantId: string, backupId: string): Promise<OpenPoint> {
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
    this.evictIdle();
    let entry = this.open.get(row.id);
    if (!entry) {
      entry = this.openPoint(row);
      this.open.set(row.id, entry);
      entry.catch(() => this.open.delete(row.id));
      while (this.open.size > OPEN_POINTS_MAX) {
        // Map order is insertion order and touch() re-inserts: the first key is the least recent.
        const oldest = this.open.keys().next().value as string;
        this.release(this.open.get(oldest)!);
        this.open.delete(oldest);
      }
    }
    const point = await entry;
    point.lastUsed = this.now();
    if (point.pinnedUntil - point.lastUsed < OPEN_POINT_PIN_MS / 2) {
      point.pinnedUntil = point.lastUsed + OPEN_POINT_PIN_MS;
      await this.opts.catalog.exportPin.updateMany({
        where: { id: point.pinId },
        data: { expiresAt: new Date(point.pinnedUntil) },
      });
    }
    this.open.delete(row.id);
    this.open.set(row.id, entry);
    return point;
  }

  /** Pins the point (refused once it is DELETING), then opens it; the pin goes if opening fails. */
  private async openPoint(row: { id: string; repositoryId: string; indexRef: string }): Promise<OpenPoint> {
    const pinnedUntil = this.now() + OPEN_POINT_PIN_MS;
    const pinId = await this.opts.catalog.$transaction(async (tx) => {
      // The lock orders this against prune marking the point DELETING (as for NBD exports).
      const locked = await tx.$queryRaw<{ status: string }[]>`
        SELECT status::text AS status FROM backups WHERE id = ${row.id}::uuid FOR UPDATE`;
      if (locked[0]?.status !== "AVAILABLE") return undefined;
      const pin = await tx.exportPin.create({
        data: { backupId: row.id, node: this.opts.node ?? hostname(), expiresAt: new Date(pinnedUntil) },
        select: { id: true },
      });
      return pin.id;
    });
    if (!pinId) {
      throw new BulwarkError("BULWARK_API_INVALID_STATE", `backup ${row.id} is being deleted`, {
        details: { backupId: row.id },
      });
    }
    try {
      const { repo } = await this.opts.repositories.get(row.repositoryId);
      const reader = new PointReader(repo, await repo.readPoint(row.indexRef));
      const volume = await openVolume(reader);
      return { volume, filesystems: new Map(), lastUsed: this.now(), pinId, pinnedUntil };
    } catch (err) {
      await this.unpin(pinId);
      throw err;
    }
  }

  /** Unpins a point leaving the cache (best effort: a pin left behind ends at its expiresAt). */
  private release(entry: Promise<OpenPoint>): void {
    void entry.then(
      (p) => this.unpin(p.pinId),
      () => undefined,
    );
  }

  private async unpin(pinId: string): Promise<void> {
    await this.opts.catalog.exportPin.deleteMany({ where: { id: pinId } }).catch(() => undefined);
  }

  private evictIdle(): void {
    const cutoff = this.now() - OPEN_POINT_IDLE_MS;
    for (const [id, entry] of this.open) {
      void entry.then(
        (p) => {
          if (p.lastUsed < cutoff && this.open.get(id) === entry) {
            this.open.delete(id);
            void this.unpin(p.pinId);
          }
        },
        () => undefined,
      );
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
