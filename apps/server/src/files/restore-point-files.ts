// File-level restore on the server: a restore point's image read by random access from the
// repository (PointReader), its partition table and filesystems parsed in userspace
// (@bulwark/filesystems). Nothing is mounted and no agent is involved.
//
// Opening a point reads its index root, the partition table and each filesystem's superblock; a
// help-desk user browsing one directory after another would pay that on every click, and lose the
// reader's chunk cache. So opened points are kept for a short idle time, a few at a time.

import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import { type FileSystemReader, openVolume, type Volume } from "@bulwark/filesystems";
import { PointReader } from "@bulwark/repository";
import type { RepositoryRegistry } from "../repositories/registry.js";

/** Restore points kept open per node: each holds a chunk cache (a few MiB), so only a handful. */
export const OPEN_POINTS_MAX = 8;
/** A point nobody browsed for this long is closed; long enough for a person clicking through. */
export const OPEN_POINT_IDLE_MS = 5 * 60_000;

interface OpenPoint {
  volume: Volume;
  filesystems: Map<number, Promise<FileSystemReader>>;
  lastUsed: number;
}

export interface RestorePointFilesOptions {
  catalog: Catalog;
  repositories: RepositoryRegistry;
  now?: () => number;
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
      entry = (async () => {
        const { repo } = await this.opts.repositories.get(row.repositoryId);
        const reader = new PointReader(repo, await repo.readPoint(row.indexRef));
        return { volume: await openVolume(reader), filesystems: new Map(), lastUsed: this.now() };
      })();
      this.open.set(row.id, entry);
      entry.catch(() => this.open.delete(row.id));
      while (this.open.size > OPEN_POINTS_MAX) {
        // Map order is insertion order and touch() re-inserts: the first key is the least recent.
        this.open.delete(this.open.keys().next().value as string);
      }
    }
    const point = await entry;
    point.lastUsed = this.now();
    this.open.delete(row.id);
    this.open.set(row.id, entry);
    return point;
  }

  private evictIdle(): void {
    const cutoff = this.now() - OPEN_POINT_IDLE_MS;
    for (const [id, entry] of this.open) {
      void entry.then(
        (p) => {
          if (p.lastUsed < cutoff && this.open.get(id) === entry) this.open.delete(id);
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
