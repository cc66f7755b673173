import { mkdir, readdir } from "node:fs/promises";
import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import { type KeySecret, LocalBackend, Repository } from "@bulwark/repository";
import { PostgresChunkIndex } from "./chunk-index.js";

// The repositories this node serves, opened on first use from their catalog rows. Each is opened
// once per process (its codec worker pool is shared by every session) with the Postgres chunk
// index, and checked against the row: a row must never lead to a different store.

export interface OpenRepository {
  /** The catalog row's ID. */
  id: string;
  tenantId: string;
  repo: Repository;
  index: PostgresChunkIndex;
}

export interface RepositoryRegistryOptions {
  catalog: Catalog;
  /** What unlocks the repositories (config: repositoryPassphraseFile or repositoryKeyFile). */
  secret: KeySecret | undefined;
  /** Codec worker threads per repository (default: one per core). */
  threads?: number;
}

export class RepositoryRegistry {
  private readonly open = new Map<string, Promise<OpenRepository>>();

  constructor(private readonly opts: RepositoryRegistryOptions) {}

  /** The repository of a catalog row, opened once; a failed open is retried on the next call. */
  get(repositoryId: string): Promise<OpenRepository> {
    let entry = this.open.get(repositoryId);
    if (!entry) {
      entry = this.openRow(repositoryId);
      this.open.set(repositoryId, entry);
      entry.catch(() => this.open.delete(repositoryId));
    }
    return entry;
  }

  private async openRow(repositoryId: string): Promise<OpenRepository> {
    const row = await this.opts.catalog.repository.findUnique({ where: { id: repositoryId } });
    if (!row) {
      throw new BulwarkError(
        "BULWARK_INGEST_NO_REPOSITORY",
        `repository ${repositoryId} is not in the catalog`,
      );
    }
    if (row.kind !== "LOCAL") {
      throw new BulwarkError(
        "BULWARK_INGEST_NO_REPOSITORY",
        `repository ${row.name} is of kind ${row.kind}; this server serves LOCAL repositories only`,
      );
    }
    if (!this.opts.secret) {
      throw new BulwarkError(
        "BULWARK_INGEST_NO_REPOSITORY",
        "no repository secret configured (repositoryPassphraseFile or repositoryKeyFile)",
      );
    }
    const index = new PostgresChunkIndex(this.opts.catalog, row.id);
    let repo: Repository;
    try {
      repo = await Repository.open(new LocalBackend(row.location), this.opts.secret, {
        chunkIndex: index,
        ...(this.opts.threads !== undefined ? { threads: this.opts.threads } : {}),
      });
    } catch (cause) {
      // An agent sees "this server cannot take backups now", not the store's own NOT_FOUND or key errors.
      const code = cause instanceof BulwarkError ? cause.code : "unexpected error";
      throw new BulwarkError(
        "BULWARK_INGEST_NO_REPOSITORY",
        `repository ${row.name} cannot be opened on this server node (${code})`,
        { cause, details: { repository: row.name, reason: code } },
      );
    }
    if (repo.config.repositoryId !== row.repoUuid) {
      await repo.close();
      throw new BulwarkError(
        "BULWARK_INGEST_REPOSITORY_MISMATCH",
        `${row.location} holds repository ${repo.config.repositoryId}, but the catalog row ${row.name} names ${row.repoUuid}`,
        { details: { repository: row.name, location: row.location } },
      );
    }
    return { id: row.id, tenantId: row.tenantId, repo, index };
  }

  /** Stops every codec worker pool. */
  async close(): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.all(all.map((p) => p.then((r) => r.repo.close()).catch(() => undefined)));
  }
}

export interface InitRepositoryOptions {
  catalog: Catalog;
  secret: KeySecret;
  tenantSlug: string;
  name: string;
  /** An empty or absent directory. */
  location: string;
  chunkSize?: number;
}

/**
 * One-time set-up of a LOCAL repository: creates the store in an empty directory, then the catalog
 * row naming it. The store comes first: a row must never point at nothing. If the row cannot be
 * created (duplicate name), the new, empty store is reported and left for the operator to remove.
 */
export async function initRepository(opts: InitRepositoryOptions): Promise<{ id: string; repoUuid: string }> {
  const tenant = await opts.catalog.tenant.findUnique({ where: { slug: opts.tenantSlug } });
  if (!tenant) {
    throw new BulwarkError("BULWARK_GENERAL_NOT_FOUND", `tenant ${opts.tenantSlug} does not exist`);
  }
  const clash = await opts.catalog.repository.findFirst({
    where: { OR: [{ tenantId: tenant.id, name: opts.name }, { location: opts.location }] },
  });
  if (clash) {
    throw new BulwarkError(
      "BULWARK_REPO_ALREADY_EXISTS",
      `the catalog already has repository ${clash.name} at ${clash.location}`,
    );
  }
  await mkdir(opts.location, { recursive: true });
  if ((await readdir(opts.location)).length > 0) {
    throw new BulwarkError("BULWARK_REPO_ALREADY_EXISTS", `${opts.location} is not empty`);
  }
  const repo = await Repository.init(
    new LocalBackend(opts.location),
    opts.secret,
    opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {},
  );
  try {
    const row = await opts.catalog.repository.create({
      data: {
        tenantId: tenant.id,
        name: opts.name,
        kind: "LOCAL",
        location: opts.location,
        repoUuid: repo.config.repositoryId,
      },
    });
    return { id: row.id, repoUuid: row.repoUuid };
  } finally {
    await repo.close();
  }
}
