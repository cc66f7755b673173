// API tokens for scripts and the CLI. The secret is shown once at creation; only its SHA-256 is
// stored. Everyone manages their own tokens; admins also list and revoke other users' tokens.

import {
  type ApiToken as ApiTokenOut,
  apiTokenListQuerySchema,
  apiTokenSchema,
  createApiTokenRequestSchema,
  createApiTokenResponseSchema,
  idParamsSchema,
  pageQuerySchema,
  pageSchema,
} from "@bulwark/api";
import type { Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { isNarrowerOrEqual } from "../../auth/principal.js";
import { newApiToken } from "../../auth/tokens.js";
import { audit, notFound, tenantOf } from "../context.js";
import type { ApiDeps } from "../deps.js";
import type { ApiToken } from "../models.js";
import { cursorDate, decodeCursor, pageOf } from "../pagination.js";
import { principalOf } from "../rbac.js";
import { iso } from "../serialize.js";

function tokenOut(t: ApiToken): ApiTokenOut {
  return {
    id: t.id,
    userId: t.userId,
    name: t.name,
    prefix: t.prefix,
    role: t.role,
    createdAt: iso(t.createdAt),
    expiresAt: iso(t.expiresAt),
    lastUsedAt: iso(t.lastUsedAt),
    revokedAt: iso(t.revokedAt),
  };
}

export function apiTokenRoutes(deps: ApiDeps): FastifyPluginAsyncZod {
  const { catalog } = deps;
  return async (app) => {
    app.get(
      "/api-tokens",
      {
        schema: {
          tags: ["api-tokens"],
          summary: "The caller's API tokens (admins: ?all=true or ?userId= for others')",
          querystring: pageQuerySchema.extend(apiTokenListQuerySchema.shape),
          response: { 200: pageSchema(apiTokenSchema) },
        },
      },
      async (request) => {
        const principal = principalOf(request);
        const q = request.query;
        const wantsOthers = q.all === "true" || (q.userId !== undefined && q.userId !== principal.user.id);
        if (wantsOthers && principal.role !== "ADMIN") {
          throw new BulwarkError("BULWARK_AUTH_FORBIDDEN", "only admins list other users' API tokens");
        }
        const where: Prisma.ApiTokenWhereInput = { user: { tenantId: tenantOf(request) } };
        if (q.all !== "true") where.userId = q.userId ?? principal.user.id;
        if (q.cursor) {
          const [createdAt, id] = decodeCursor(q.cursor, 2);
          const at = cursorDate(createdAt as string);
          where.AND = [{ OR: [{ createdAt: { lt: at } }, { createdAt: at, id: { lt: String(id) } }] }];
        }
        const rows = await catalog.apiToken.findMany({
          where,
          orderBy: [{ createdAt: "desc" }, { id: "desc" }],
          take: q.limit + 1,
        });
        return pageOf(rows, q.limit, (t) => [t.createdAt.toISOString(), t.id], tokenOut);
      },
    );

    app.post(
      "/api-tokens",
      {
        schema: {
          tags: ["api-tokens"],
          summary: "Create an API token for the caller; the token is in this answer only",
          body: createApiTokenRequestSchema,
          response: { 201: createApiTokenResponseSchema },
        },
      },
      async (request, reply) => {
        const principal = principalOf(request);
        const { name, role, ttlSeconds } = request.body;
        // A token never acts with more than its creator could at creation time.
        if (role !== undefined && !isNarrowerOrEqual(role, principal.role)) {
          throw new BulwarkError(
            "BULWARK_AUTH_FORBIDDEN",
            `a ${principal.role} cannot create a ${role} token`,
          );
        }
        const now = deps.now();
        const minted = newApiToken();
        const row = await catalog.apiToken.create({
          data: {
            userId: principal.user.id,
            name,
            prefix: minted.prefix,
            tokenHash: minted.tokenHash,
            role: role ?? (principal.via === "api-token" ? principal.role : null),
            createdAt: now,
            expiresAt: ttlSeconds === undefined ? null : new Date(now.getTime() + ttlSeconds * 1000),
          },
        });
        await audit(deps, request, {
          action: "api-token.create",
          targetType: "api-token",
          targetId: row.id,
          details: { name, prefix: row.prefix, role: row.role },
        });
        return reply.status(201).send({ apiToken: tokenOut(row), token: minted.token });
      },
    );

    app.delete(
      "/api-tokens/:id",
      { schema: { tags: ["api-tokens"], summary: "Revoke an API token", params: idParamsSchema } },
      async (request, reply) => {
        const principal = principalOf(request);
        const token = await catalog.apiToken.findFirst({
          where: { id: request.params.id, user: { tenantId: tenantOf(request) } },
        });
        // Someone else's token is "not found" to non-admins: IDs of others' tokens are not confirmed.
        if (!token || (token.userId !== principal.user.id && principal.role !== "ADMIN")) {
          throw notFound("api-token", request.params.id);
        }
        if (token.revokedAt !== null)
          throw new BulwarkError("BULWARK_API_INVALID_STATE", "the token is already revoked");
        await catalog.apiToken.update({ where: { id: token.id }, data: { revokedAt: deps.now() } });
        await audit(deps, request, {
          action: "api-token.revoke",
          targetType: "api-token",
          targetId: token.id,
          details: { prefix: token.prefix, ownerId: token.userId },
        });
        return reply.status(204).send();
      },
    );
  };
}
