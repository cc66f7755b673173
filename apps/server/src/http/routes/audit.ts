// The audit log, newest first, with filters; read-only (the table refuses UPDATE and DELETE).

import { auditEventSchema, auditListQuerySchema, pageQuerySchema, pageSchema } from "@bulwark/api";
import type { Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { tenantOf } from "../context.js";
import type { ApiDeps } from "../deps.js";
import type { AuditEvent } from "../models.js";
import { decodeCursor, pageOf } from "../pagination.js";
import { iso } from "../serialize.js";

function eventOut(e: AuditEvent) {
  return {
    id: e.id.toString(),
    at: iso(e.at),
    actorType: e.actorType,
    actorId: e.actorId,
    actorName: e.actorName,
    action: e.action,
    targetType: e.targetType,
    targetId: e.targetId,
    outcome: e.outcome,
    ip: e.ip,
    details: e.details,
  };
}

export function auditRoutes(deps: ApiDeps): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      "/audit-events",
      {
        schema: {
          tags: ["audit"],
          summary: "Audit events, newest first",
          querystring: pageQuerySchema.extend(auditListQuerySchema.shape),
          response: { 200: pageSchema(auditEventSchema) },
        },
      },
      async (request) => {
        const q = request.query;
        const and: Prisma.AuditEventWhereInput[] = [{ tenantId: tenantOf(request) }];
        if (q.action)
          and.push(q.action.endsWith(".") ? { action: { startsWith: q.action } } : { action: q.action });
        if (q.actorId) and.push({ actorId: q.actorId });
        if (q.targetType) and.push({ targetType: q.targetType });
        if (q.targetId) and.push({ targetId: q.targetId });
        if (q.outcome) and.push({ outcome: q.outcome });
        if (q.from) and.push({ at: { gte: new Date(q.from) } });
        if (q.to) and.push({ at: { lt: new Date(q.to) } });
        if (q.cursor) {
          // IDs grow with every insert, so "older than the last one seen" is simply a smaller ID.
          const [id] = decodeCursor(q.cursor, 1);
          if (typeof id !== "string" || !/^\d{1,19}$/.test(id)) {
            throw new BulwarkError("BULWARK_GENERAL_VALIDATION", "invalid cursor");
          }
          and.push({ id: { lt: BigInt(id) } });
        }
        const rows = await deps.catalog.auditEvent.findMany({
          where: { AND: and },
          orderBy: { id: "desc" },
          take: q.limit + 1,
        });
        return pageOf(rows, q.limit, (e) => [e.id.toString()], eventOut);
      },
    );
  };
}
