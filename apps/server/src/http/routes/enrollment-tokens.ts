// Enrollment tokens: create (the token file is in this answer only), list, revoke. The
// enrollment service (apps/server/src/enrollment) stores them hashed and audits its own changes.

import {
  createEnrollmentTokenRequestSchema,
  createEnrollmentTokenResponseSchema,
  enrollmentTokenListQuerySchema,
  enrollmentTokenSchema,
  idParamsSchema,
  pageQuerySchema,
  pageSchema,
} from "@bulwark/api";
import type { Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { actorOf, notFound, tenantOf } from "../context.js";
import type { ApiDeps, EnrollmentTokens } from "../deps.js";
import { cursorDate, decodeCursor, pageOf } from "../pagination.js";
import { iso } from "../serialize.js";

export function enrollmentTokenRoutes(deps: ApiDeps, tokens: EnrollmentTokens): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      "/enrollment-tokens",
      {
        schema: {
          tags: ["enrollment"],
          summary: "Mint a single-use enrollment token; the token file is in this answer only",
          body: createEnrollmentTokenRequestSchema,
          response: { 201: createEnrollmentTokenResponseSchema },
        },
      },
      async (request, reply) => {
        const { groupId, tags, ttlSeconds } = request.body;
        if (groupId !== undefined) {
          const group = await deps.catalog.group.findFirst({
            where: { id: groupId, tenantId: tenantOf(request) },
          });
          if (!group) throw notFound("group", groupId);
        }
        const minted = await tokens.mint(actorOf(request), { groupId, tags, ttlSeconds });
        return reply
          .status(201)
          .send({ id: minted.id, expiresAt: iso(minted.expiresAt), tokenFile: minted.tokenFile });
      },
    );

    app.get(
      "/enrollment-tokens",
      {
        schema: {
          tags: ["enrollment"],
          summary: "Enrollment tokens, newest first (never the secrets); ?active=true for usable ones only",
          querystring: pageQuerySchema.extend(enrollmentTokenListQuerySchema.shape),
          response: { 200: pageSchema(enrollmentTokenSchema) },
        },
      },
      async (request) => {
        const q = request.query;
        const now = deps.now();
        const and: Prisma.EnrollmentTokenWhereInput[] = [{ tenantId: tenantOf(request) }];
        const usable: Prisma.EnrollmentTokenWhereInput = {
          usedAt: null,
          revokedAt: null,
          expiresAt: { gt: now },
        };
        if (q.active === true) and.push(usable);
        if (q.active === false) and.push({ NOT: usable });
        if (q.cursor) {
          const [createdAt, id] = decodeCursor(q.cursor, 2);
          const at = cursorDate(createdAt as string);
          and.push({ OR: [{ createdAt: { lt: at } }, { createdAt: at, id: { lt: String(id) } }] });
        }
        const rows = await deps.catalog.enrollmentToken.findMany({
          where: { AND: and },
          orderBy: [{ createdAt: "desc" }, { id: "desc" }],
          take: q.limit + 1,
        });
        return pageOf(
          rows,
          q.limit,
          (t) => [t.createdAt.toISOString(), t.id],
          (t) => ({
            id: t.id,
            groupId: t.groupId,
            tags: t.tags,
            createdAt: iso(t.createdAt),
            expiresAt: iso(t.expiresAt),
            usedAt: iso(t.usedAt),
            revokedAt: iso(t.revokedAt),
          }),
        );
      },
    );

    app.delete(
      "/enrollment-tokens/:id",
      { schema: { tags: ["enrollment"], summary: "Revoke an enrollment token", params: idParamsSchema } },
      async (request, reply) => {
        const token = await deps.catalog.enrollmentToken.findFirst({
          where: { id: request.params.id, tenantId: tenantOf(request) },
          select: { id: true, usedAt: true, revokedAt: true },
        });
        if (!token) throw notFound("enrollment-token", request.params.id);
        if (token.revokedAt !== null || token.usedAt !== null) {
          throw new BulwarkError("BULWARK_API_INVALID_STATE", "the token is already used or revoked");
        }
        await tokens.revoke(actorOf(request), token.id);
        return reply.status(204).send();
      },
    );
  };
}
