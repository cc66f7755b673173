// Users: admins create, change role, disable, reset passwords and delete; auditors may read.

import {
  createUserRequestSchema,
  idParamsSchema,
  pageQuerySchema,
  pageSchema,
  updateUserRequestSchema,
  userListQuerySchema,
  userSchema,
} from "@bulwark/api";
import type { Catalog, Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { hashPassword } from "../../auth/password.js";
import { audit, isUniqueViolation, notFound, tenantOf } from "../context.js";
import type { ApiDeps } from "../deps.js";
import type { User } from "../models.js";
import { decodeCursor, pageOf } from "../pagination.js";
import { principalOf } from "../rbac.js";
import { iso } from "../serialize.js";

export function userOut(user: User) {
  return {
    id: user.id,
    email: user.email,
    displayName: user.displayName,
    role: user.role,
    disabled: user.disabledAt !== null,
    createdAt: iso(user.createdAt),
    lastLoginAt: iso(user.lastLoginAt),
  };
}

/** Refuses a change that would leave the tenant without an enabled admin (nobody could fix it then). */
async function assertAdminRemains(catalog: Catalog, tenantId: string, exceptUserId: string): Promise<void> {
  const admins = await catalog.user.count({
    where: { tenantId, role: "ADMIN", disabledAt: null, id: { not: exceptUserId } },
  });
  if (admins === 0) {
    throw new BulwarkError("BULWARK_API_INVALID_STATE", "this would leave no enabled admin");
  }
}

export function userRoutes(deps: ApiDeps): FastifyPluginAsyncZod {
  const { catalog } = deps;
  const find = async (tenantId: string, id: string) => {
    const user = await catalog.user.findFirst({ where: { id, tenantId } });
    if (!user) throw notFound("user", id);
    return user;
  };

  return async (app) => {
    app.get(
      "/users",
      {
        schema: {
          tags: ["users"],
          summary: "List users (by e-mail)",
          querystring: pageQuerySchema.extend(userListQuerySchema.shape),
          response: { 200: pageSchema(userSchema) },
        },
      },
      async (request) => {
        const q = request.query;
        const where: Prisma.UserWhereInput = { tenantId: tenantOf(request) };
        if (q.role) where.role = q.role;
        if (q.search) {
          where.OR = [
            { email: { contains: q.search, mode: "insensitive" } },
            { displayName: { contains: q.search, mode: "insensitive" } },
          ];
        }
        if (q.cursor) {
          const [email, id] = decodeCursor(q.cursor, 2) as [string, string];
          where.AND = [{ OR: [{ email: { gt: email } }, { email, id: { gt: id } }] }];
        }
        const rows = await catalog.user.findMany({
          where,
          orderBy: [{ email: "asc" }, { id: "asc" }],
          take: q.limit + 1,
        });
        return pageOf(rows, q.limit, (u) => [u.email, u.id], userOut);
      },
    );

    app.get(
      "/users/:id",
      {
        schema: {
          tags: ["users"],
          summary: "One user",
          params: idParamsSchema,
          response: { 200: userSchema },
        },
      },
      async (request) => userOut(await find(tenantOf(request), request.params.id)),
    );

    app.post(
      "/users",
      {
        schema: {
          tags: ["users"],
          summary: "Create a user",
          body: createUserRequestSchema,
          response: { 201: userSchema },
        },
      },
      async (request, reply) => {
        const tenantId = tenantOf(request);
        const { email, displayName, role, password } = request.body;
        let user: User;
        try {
          user = await catalog.user.create({
            data: {
              tenantId,
              email,
              displayName,
              role,
              passwordHash: await hashPassword(password),
              createdAt: deps.now(),
            },
          });
        } catch (err) {
          if (isUniqueViolation(err))
            throw new BulwarkError("BULWARK_API_CONFLICT", `a user ${email} exists`);
          throw err;
        }
        await audit(deps, request, {
          action: "user.create",
          targetType: "user",
          targetId: user.id,
          details: { email, role },
        });
        return reply.status(201).send(userOut(user));
      },
    );

    app.patch(
      "/users/:id",
      {
        schema: {
          tags: ["users"],
          summary: "Change a user's name, role, password or disabled state",
          params: idParamsSchema,
          body: updateUserRequestSchema,
          response: { 200: userSchema },
        },
      },
      async (request) => {
        const tenantId = tenantOf(request);
        const before = await find(tenantId, request.params.id);
        const body = request.body;
        const now = deps.now();
        const demotes = body.role !== undefined && body.role !== "ADMIN" && before.role === "ADMIN";
        if (demotes || (body.disabled === true && before.role === "ADMIN")) {
          await assertAdminRemains(catalog, tenantId, before.id);
        }
        const data: Prisma.UserUpdateInput = {};
        if (body.displayName !== undefined) data.displayName = body.displayName;
        if (body.role !== undefined) data.role = body.role;
        if (body.disabled !== undefined) data.disabledAt = body.disabled ? (before.disabledAt ?? now) : null;
        if (body.password !== undefined) data.passwordHash = await hashPassword(body.password);
        const user = await catalog.$transaction(async (tx) => {
          const updated = await tx.user.update({ where: { id: before.id }, data });
          // A disabled account or a new password ends every console session of that user.
          if (body.disabled === true || body.password !== undefined) {
            await tx.session.updateMany({
              where: { userId: before.id, revokedAt: null },
              data: { revokedAt: now },
            });
          }
          return updated;
        });
        const changes: Record<string, unknown> = {};
        if (body.displayName !== undefined) changes.displayName = body.displayName;
        if (body.role !== undefined) changes.role = { from: before.role, to: body.role };
        if (body.disabled !== undefined) changes.disabled = body.disabled;
        if (body.password !== undefined) changes.passwordChanged = true;
        await audit(deps, request, {
          action: "user.update",
          targetType: "user",
          targetId: user.id,
          details: changes,
        });
        return userOut(user);
      },
    );

    app.delete(
      "/users/:id",
      {
        schema: {
          tags: ["users"],
          summary: "Delete a user (their sessions and API tokens go too)",
          params: idParamsSchema,
        },
      },
      async (request, reply) => {
        const tenantId = tenantOf(request);
        const user = await find(tenantId, request.params.id);
        if (user.id === principalOf(request).user.id) {
          throw new BulwarkError("BULWARK_API_INVALID_STATE", "you cannot delete your own account");
        }
        if (user.role === "ADMIN") await assertAdminRemains(catalog, tenantId, user.id);
        await catalog.user.delete({ where: { id: user.id } });
        await audit(deps, request, {
          action: "user.delete",
          targetType: "user",
          targetId: user.id,
          details: { email: user.email },
        });
        return reply.status(204).send();
      },
    );
  };
}
