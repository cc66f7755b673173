// Groups of machines (targets for policies) and their members.

import {
  createGroupRequestSchema,
  type Group as GroupOut,
  groupMemberParamsSchema,
  groupSchema,
  idParamsSchema,
  pageQuerySchema,
  pageSchema,
  updateGroupRequestSchema,
} from "@bulwark/api";
import type { Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { audit, isUniqueViolation, notFound, tenantOf } from "../context.js";
import type { ApiDeps } from "../deps.js";
import type { Group } from "../models.js";
import { decodeCursor, pageOf } from "../pagination.js";

type GroupWithCount = Group & { _count: { agents: number } };

function groupOut(g: GroupWithCount): GroupOut {
  return { id: g.id, name: g.name, description: g.description, memberCount: g._count.agents };
}

export function groupRoutes(deps: ApiDeps): FastifyPluginAsyncZod {
  const { catalog } = deps;
  const withCount = { _count: { select: { agents: true } } } as const;
  const find = async (tenantId: string, id: string) => {
    const group = await catalog.group.findFirst({ where: { id, tenantId }, include: withCount });
    if (!group) throw notFound("group", id);
    return group;
  };
  const nameTaken = (name: string) =>
    new BulwarkError("BULWARK_API_CONFLICT", `a group named ${name} exists`);

  return async (app) => {
    app.get(
      "/groups",
      {
        schema: {
          tags: ["groups"],
          summary: "List groups (by name)",
          querystring: pageQuerySchema.extend({ search: z.string().min(1).max(200).optional() }),
          response: { 200: pageSchema(groupSchema) },
        },
      },
      async (request) => {
        const q = request.query;
        const where: Prisma.GroupWhereInput = { tenantId: tenantOf(request) };
        if (q.search) where.name = { contains: q.search, mode: "insensitive" };
        if (q.cursor) {
          const [name, id] = decodeCursor(q.cursor, 2) as [string, string];
          where.OR = [{ name: { gt: name } }, { name, id: { gt: id } }];
        }
        const rows = await catalog.group.findMany({
          where,
          include: withCount,
          orderBy: [{ name: "asc" }, { id: "asc" }],
          take: q.limit + 1,
        });
        return pageOf(rows, q.limit, (g) => [g.name, g.id], groupOut);
      },
    );

    app.get(
      "/groups/:id",
      {
        schema: {
          tags: ["groups"],
          summary: "One group",
          params: idParamsSchema,
          response: { 200: groupSchema },
        },
      },
      async (request) => groupOut(await find(tenantOf(request), request.params.id)),
    );

    app.post(
      "/groups",
      {
        schema: {
          tags: ["groups"],
          summary: "Create a group",
          body: createGroupRequestSchema,
          response: { 201: groupSchema },
        },
      },
      async (request, reply) => {
        const tenantId = tenantOf(request);
        let group: GroupWithCount;
        try {
          group = await catalog.group.create({
            data: { tenantId, name: request.body.name, description: request.body.description ?? null },
            include: withCount,
          });
        } catch (err) {
          if (isUniqueViolation(err)) throw nameTaken(request.body.name);
          throw err;
        }
        await audit(deps, request, {
          action: "group.create",
          targetType: "group",
          targetId: group.id,
          details: { name: group.name },
        });
        return reply.status(201).send(groupOut(group));
      },
    );

    app.patch(
      "/groups/:id",
      {
        schema: {
          tags: ["groups"],
          summary: "Rename or describe a group",
          params: idParamsSchema,
          body: updateGroupRequestSchema,
          response: { 200: groupSchema },
        },
      },
      async (request) => {
        const before = await find(tenantOf(request), request.params.id);
        let group: GroupWithCount;
        try {
          group = await catalog.group.update({
            where: { id: before.id },
            data: { name: request.body.name, description: request.body.description },
            include: withCount,
          });
        } catch (err) {
          if (isUniqueViolation(err)) throw nameTaken(String(request.body.name));
          throw err;
        }
        await audit(deps, request, {
          action: "group.update",
          targetType: "group",
          targetId: group.id,
          details: { name: { from: before.name, to: group.name } },
        });
        return groupOut(group);
      },
    );

    app.delete(
      "/groups/:id",
      {
        schema: {
          tags: ["groups"],
          summary: "Delete a group (its memberships and policy assignments go; machines stay)",
          params: idParamsSchema,
        },
      },
      async (request, reply) => {
        const group = await find(tenantOf(request), request.params.id);
        const policyIds = await catalog.policyAssignment.findMany({
          where: { groupId: group.id },
          select: { policyId: true },
        });
        await catalog.group.delete({ where: { id: group.id } });
        await audit(deps, request, {
          action: "group.delete",
          targetType: "group",
          targetId: group.id,
          details: { name: group.name },
        });
        // The group's assignments are gone (cascade): their schedules must go too.
        for (const policyId of new Set(policyIds.map((p) => p.policyId)))
          await deps.policySchedules?.syncPolicy(policyId);
        return reply.status(204).send();
      },
    );

    app.put(
      "/groups/:id/members/:agentId",
      { schema: { tags: ["groups"], summary: "Add a machine to a group", params: groupMemberParamsSchema } },
      async (request, reply) => {
        const tenantId = tenantOf(request);
        const group = await find(tenantId, request.params.id);
        const agent = await catalog.agent.findFirst({ where: { id: request.params.agentId, tenantId } });
        if (!agent) throw notFound("agent", request.params.agentId);
        await catalog.agentGroup.upsert({
          where: { agentId_groupId: { agentId: agent.id, groupId: group.id } },
          update: {},
          create: { agentId: agent.id, groupId: group.id },
        });
        await audit(deps, request, {
          action: "group.member.add",
          targetType: "group",
          targetId: group.id,
          details: { agentId: agent.id },
        });
        return reply.status(204).send();
      },
    );

    app.delete(
      "/groups/:id/members/:agentId",
      {
        schema: {
          tags: ["groups"],
          summary: "Remove a machine from a group",
          params: groupMemberParamsSchema,
        },
      },
      async (request, reply) => {
        const group = await find(tenantOf(request), request.params.id);
        const { count } = await catalog.agentGroup.deleteMany({
          where: { groupId: group.id, agentId: request.params.agentId },
        });
        if (count === 0) throw notFound("member", request.params.agentId);
        await audit(deps, request, {
          action: "group.member.remove",
          targetType: "group",
          targetId: group.id,
          details: { agentId: request.params.agentId },
        });
        return reply.status(204).send();
      },
    );
  };
}
