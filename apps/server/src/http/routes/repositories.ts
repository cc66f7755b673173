// Repository status from the catalog: size, chunk count, dedup and compression ratios, and the
// last verify and GC runs (their Job rows).

import { pageQuerySchema, pageSchema, type RepositoryStatus, repositoryStatusSchema } from "@bulwark/api";
import type { JobKind, Prisma } from "@bulwark/catalog";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { tenantOf } from "../context.js";
import type { ApiDeps } from "../deps.js";
import type { Job } from "../models.js";
import { decodeCursor, pageOf } from "../pagination.js";
import { iso, num } from "../serialize.js";

function ratio(numerator: number, denominator: number): number | null {
  return denominator > 0 ? Math.round((numerator / denominator) * 1000) / 1000 : null;
}

/** A repository's size and deduplication from the catalog; the REST status and /metrics both report it. */
export async function repositoryUsage(catalog: ApiDeps["catalog"], repositoryId: string) {
  const [chunks, backups] = await Promise.all([
    catalog.chunk.aggregate({
      where: { repositoryId },
      _count: true,
      _sum: { storedSize: true, plainSize: true },
    }),
    catalog.backup.aggregate({
      where: { repositoryId, status: "AVAILABLE" },
      _count: true,
      _sum: { changedBytes: true },
    }),
  ]);
  const storedBytes = chunks._sum.storedSize ?? 0;
  const plainBytes = chunks._sum.plainSize ?? 0;
  const ingestedBytes = num(backups._sum.changedBytes ?? 0n);
  return {
    chunkCount: chunks._count,
    storedBytes,
    plainBytes,
    backupCount: backups._count,
    ingestedBytes,
    dedupRatio: ratio(ingestedBytes, plainBytes),
    compressionRatio: ratio(plainBytes, storedBytes),
  };
}

function runOut(job: Job | null) {
  return job
    ? {
        jobId: job.id,
        state: job.state,
        finishedAt: iso(job.finishedAt),
        result: job.result,
        errorCode: job.errorCode,
      }
    : null;
}

export function repositoryRoutes(deps: ApiDeps): FastifyPluginAsyncZod {
  const { catalog } = deps;
  /** The newest finished maintenance job of `kind` for a repository (its params name the repository). */
  const lastRun = (tenantId: string, repositoryId: string, kind: JobKind) =>
    catalog.job.findFirst({
      where: {
        tenantId,
        kind,
        finishedAt: { not: null },
        params: { path: ["repositoryId"], equals: repositoryId },
      },
      orderBy: { finishedAt: "desc" },
    });

  return async (app) => {
    app.get(
      "/repositories",
      {
        schema: {
          tags: ["repositories"],
          summary: "Repositories with their stored size, deduplication and last verify/GC results",
          querystring: pageQuerySchema,
          response: { 200: pageSchema(repositoryStatusSchema) },
        },
      },
      async (request) => {
        const tenantId = tenantOf(request);
        const q = request.query;
        const where: Prisma.RepositoryWhereInput = { tenantId };
        if (q.cursor) {
          const [name, id] = decodeCursor(q.cursor, 2) as [string, string];
          where.OR = [{ name: { gt: name } }, { name, id: { gt: id } }];
        }
        const repos = await catalog.repository.findMany({
          where,
          orderBy: [{ name: "asc" }, { id: "asc" }],
          take: q.limit + 1,
        });
        const page = pageOf(
          repos,
          q.limit,
          (r) => [r.name, r.id],
          (r) => r,
        );
        const items = await Promise.all(
          page.items.map(async (repo): Promise<RepositoryStatus> => {
            const [usage, lastVerify, lastGc] = await Promise.all([
              repositoryUsage(catalog, repo.id),
              lastRun(tenantId, repo.id, "VERIFY"),
              lastRun(tenantId, repo.id, "GC"),
            ]);
            return {
              id: repo.id,
              name: repo.name,
              kind: repo.kind,
              location: repo.location,
              createdAt: iso(repo.createdAt),
              ...usage,
              lastVerify: runOut(lastVerify),
              lastGc: runOut(lastGc),
            };
          }),
        );
        return { items, nextCursor: page.nextCursor };
      },
    );
  };
}
