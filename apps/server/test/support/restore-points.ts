import { stat } from "node:fs/promises";
import type { Catalog } from "@bulwark/catalog";
import { ingestFile, type KeySecret, LocalBackend, Repository } from "@bulwark/repository";

// A restore point for tests of what reads one (exports, file-level restore, the CLI over them):
// an image file stored with the repository library the way a backup stores it, and the catalog
// rows of a machine, its volume and the AVAILABLE Backup.

export interface StoredRestorePoint {
  backupId: string;
  agentId: string;
  volumeId: string;
  /** The Backup row's data without indexRef and status, for more rows of the same volume. */
  row: {
    tenantId: string;
    agentId: string;
    volumeId: string;
    repositoryId: string;
    capturedAt: Date;
    volumeSize: bigint;
    chunkSize: number;
    storedBytes: bigint;
    changedBytes: bigint;
    method: "FULL_HASH";
  };
  indexRef: string;
}

export async function storeRestorePoint(
  catalog: Catalog,
  opts: {
    tenantId: string;
    repositoryId: string;
    /** The repository directory (LocalBackend) and its secret. */
    location: string;
    secret: KeySecret;
    image: string;
    /** The volume key and the restore point's name. */
    name: string;
    hostname?: string;
    capturedAt?: Date;
  },
): Promise<StoredRestorePoint> {
  const size = BigInt((await stat(opts.image)).size);
  const repo = await Repository.open(new LocalBackend(opts.location), opts.secret);
  const point = await ingestFile(repo, opts.image, { name: opts.name }).finally(() => repo.close());
  const agent = await catalog.agent.create({
    data: {
      tenantId: opts.tenantId,
      machineId: "m-1",
      hostname: opts.hostname ?? "ws-1",
      os: "linux",
      agentVersion: "0.1.0",
    },
  });
  const volume = await catalog.volume.create({
    data: { agentId: agent.id, key: opts.name, kind: "IMAGE_FILE", devicePath: opts.image, sizeBytes: size },
  });
  const row = {
    tenantId: opts.tenantId,
    agentId: agent.id,
    volumeId: volume.id,
    repositoryId: opts.repositoryId,
    capturedAt: opts.capturedAt ?? new Date(),
    volumeSize: size,
    chunkSize: point.chunkSize,
    storedBytes: 0n,
    changedBytes: size,
    method: "FULL_HASH" as const,
  };
  const backup = await catalog.backup.create({ data: { ...row, indexRef: point.id } });
  return { backupId: backup.id, agentId: agent.id, volumeId: volume.id, row, indexRef: point.id };
}
