// Instant access: open a restore point as an NBD export on this node, list and close exports.
// Exports live in the memory of the node that opened them (docs/nbd.md): a listing shows this
// node's exports only, and closing one goes to the node that holds it.

import {
  exportIdParamsSchema,
  exportSummarySchema,
  idParamsSchema,
  openExportRequestSchema,
  openedExportSchema,
  pageSchema,
} from "@bulwark/api";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { actorOf, notFound, tenantOf } from "../context.js";
import type { ApiDeps, RestorePointExports } from "../deps.js";
import { iso } from "../serialize.js";

export function exportRoutes(deps: ApiDeps, exports: RestorePointExports): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      "/backups/:id/exports",
      {
        schema: {
          tags: ["backups"],
          summary:
            "Serve a restore point over NBD (instant access); the URI with its secret name is in this answer only",
          params: idParamsSchema,
          body: openExportRequestSchema,
          response: { 201: openedExportSchema },
        },
      },
      async (request, reply) => {
        const backup = await deps.catalog.backup.findFirst({
          where: { id: request.params.id, tenantId: tenantOf(request) },
          select: { id: true },
        });
        if (!backup) throw notFound("backup", request.params.id);
        const opened = await exports.open(actorOf(request), { backupId: backup.id, ...request.body });
        return reply.status(201).send({
          id: opened.id,
          uri: opened.uri,
          backupId: opened.backupId,
          writable: opened.writable,
          size: opened.size,
          expiresAt: iso(opened.expiresAt),
        });
      },
    );

    app.get(
      "/exports",
      {
        schema: {
          tags: ["backups"],
          summary: "Open NBD exports on this server node (never their secret names)",
          response: { 200: pageSchema(exportSummarySchema) },
        },
      },
      async (request) => ({
        items: exports.list(tenantOf(request)).map((e) => ({
          id: e.id,
          backupId: e.backupId,
          writable: e.writable,
          size: e.size,
          createdAt: iso(e.createdAt),
          expiresAt: iso(e.expiresAt),
          connections: e.connections,
          requestedBy: e.requestedBy,
        })),
        nextCursor: null,
      }),
    );

    app.post(
      "/exports/:id/close",
      {
        schema: {
          tags: ["backups"],
          summary: "Close an NBD export now: connections are cut, a writable export's overlay is discarded",
          params: exportIdParamsSchema,
        },
      },
      async (request, reply) => {
        // Only an export of the caller's tenant on this node can be closed here.
        if (!exports.list(tenantOf(request)).some((e) => e.id === request.params.id)) {
          throw notFound("export", request.params.id);
        }
        await exports.close(actorOf(request), request.params.id);
        return reply.status(204).send();
      },
    );
  };
}
