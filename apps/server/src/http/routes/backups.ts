// Restore points: list by machine, volume and time; one; delete (marked DELETING for GC, audited).

import {
  type Backup as BackupOut,
  backupListQuerySchema,
  backupSchema,
  idParamsSchema,
  pageQuerySchema,
  pageSchema,
} from "@bulwark/api";
import type { Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { audit, notFound, tenantOf } from "../context.js";
import type { ApiDeps } from "../deps.js";
import type { Backup } from "../models.js";
import { cursorDate, decodeCursor, pageOf } from "../pagination.js";
import { iso, num } from "../serialize.js";

function backupOut(b: Backup): BackupOut {
  return {
    id: b.id,
    agentId: b.agentId,
    volumeId: b.volumeId,
    repositoryId: b.repositoryId,
    jobId: b.jobId,
    status: b.status,
    capturedAt: iso(b.capturedAt),
    committedAt: iso(b.committedAt),
    volumeSize: num(b.volumeSize),
    chunkSize: b.chunkSize,
    storedBytes: num(b.storedBytes),
    changedBytes: num(b.changedBytes),
    method: b.method,
    previousId: b.previousId,
    deletingSince: iso(b.deletingSince),
  };
}

export function backupRoutes(deps: ApiDeps): FastifyPluginAsyncZod {
  const { catalog } = deps;
  const find = async (tenantId: string, id: string) => {
    const backup = await catalog.backup.findFirst({ where: { id, tenantId } });
    if (!backup) throw notFound("backup", id);
    return backup;
  };

  return async (app) => {
    app.get(
      "/backups",
      {
        schema: {
          tags: ["backups"],
          summary: "List restore points, newest first",
          querystring: pageQuerySchema.extend(backupListQuerySchema.shape),
          response: { 200: pageSchema(backupSchema) },
        },
      },
      async (request) => {
        const q = request.query;
        const and: Prisma.BackupWhereInput[] = [{ tenantId: tenantOf(request) }];
        if (q.agentId) and.push({ agentId: q.agentId });
        if (q.volumeId) and.push({ volumeId: q.volumeId });
        if (q.status) and.push({ status: q.status });
        if (q.from) and.push({ capturedAt: { gte: new Date(q.from) } });
        if (q.to) and.push({ capturedAt: { lt: new Date(q.to) } });
        if (q.cursor) {
          const [capturedAt, id] = decodeCursor(q.cursor, 2);
          const at = cursorDate(capturedAt as string);
          and.push({ OR: [{ capturedAt: { lt: at } }, { capturedAt: at, id: { lt: String(id) } }] });
        }
        const rows = await catalog.backup.findMany({
          where: { AND: and },
          orderBy: [{ capturedAt: "desc" }, { id: "desc" }],
          take: q.limit + 1,
        });
        return pageOf(rows, q.limit, (b) => [b.capturedAt.toISOString(), b.id], backupOut);
      },
    );

    app.get(
      "/backups/:id",
      {
        schema: {
          tags: ["backups"],
          summary: "One restore point",
          params: idParamsSchema,
          response: { 200: backupSchema },
        },
      },
      async (request) => backupOut(await find(tenantOf(request), request.params.id)),
    );

    app.delete(
      "/backups/:id",
      {
        schema: {
          tags: ["backups"],
          summary: "Delete a restore point: marked DELETING at once, its space reclaimed by the next GC",
          params: idParamsSchema,
          response: { 200: backupSchema },
        },
      },
      async (request) => {
        const backup = await find(tenantOf(request), request.params.id);
        const now = deps.now();
        // Conditional update: two concurrent deletes mark it once, the second gets a 409.
        const { count } = await catalog.backup.updateMany({
          where: { id: backup.id, status: "AVAILABLE" },
          data: { status: "DELETING", deletingSince: now },
        });
        if (count === 0)
          throw new BulwarkError("BULWARK_API_INVALID_STATE", "the restore point is already being deleted");
        await audit(deps, request, {
          action: "backup.delete",
          targetType: "backup",
          targetId: backup.id,
          details: { agentId: backup.agentId, volumeId: backup.volumeId, capturedAt: iso(backup.capturedAt) },
        });
        return backupOut(await find(backup.tenantId, backup.id));
      },
    );
  };
}
