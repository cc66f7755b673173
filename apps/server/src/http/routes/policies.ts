// Backup policies and their assignments to groups or machines. Every change bumps the policy's
// revision and re-syncs its job schedulers (when the job system is wired).

import {
  type Assignment as AssignmentOut,
  assignmentListQuerySchema,
  assignmentSchema,
  createAssignmentRequestSchema,
  createPolicyRequestSchema,
  idParamsSchema,
  type Policy as PolicyOut,
  pageQuerySchema,
  pageSchema,
  policyListQuerySchema,
  policySchema,
  updatePolicyRequestSchema,
  type VolumeSelector,
} from "@bulwark/api";
import type { Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { audit, isUniqueViolation, notFound, tenantOf } from "../context.js";
import type { ApiDeps } from "../deps.js";
import type { Policy, PolicyAssignment } from "../models.js";
import { cursorDate, decodeCursor, pageOf } from "../pagination.js";
import { assertValidSchedule } from "../schedule.js";
import { iso, num } from "../serialize.js";

export function policyOut(p: Policy): PolicyOut {
  return {
    id: p.id,
    name: p.name,
    description: p.description,
    enabled: p.enabled,
    scheduleCron: p.scheduleCron,
    timezone: p.timezone,
    windowStartMinute: p.windowStartMinute,
    windowMinutes: p.windowMinutes,
    retention: p.retention as Record<string, number>,
    volumeSelector: p.volumeSelector as VolumeSelector,
    preHook: p.preHook,
    postHook: p.postHook,
    bandwidthLimitBps: num(p.bandwidthLimitBps),
    repositoryId: p.repositoryId,
    revision: p.revision,
    createdAt: iso(p.createdAt),
    updatedAt: iso(p.updatedAt),
  };
}

function assignmentOut(a: PolicyAssignment): AssignmentOut {
  return {
    id: a.id,
    policyId: a.policyId,
    groupId: a.groupId,
    agentId: a.agentId,
    priority: a.priority,
    createdAt: iso(a.createdAt),
  };
}

export function policyRoutes(deps: ApiDeps): FastifyPluginAsyncZod {
  const { catalog } = deps;
  const find = async (tenantId: string, id: string) => {
    const policy = await catalog.policy.findFirst({ where: { id, tenantId } });
    if (!policy) throw notFound("policy", id);
    return policy;
  };
  const assertRepository = async (tenantId: string, repositoryId: string) => {
    const repo = await catalog.repository.findFirst({
      where: { id: repositoryId, tenantId },
      select: { id: true },
    });
    if (!repo) throw notFound("repository", repositoryId);
  };
  const nameTaken = (name: string) =>
    new BulwarkError("BULWARK_API_CONFLICT", `a policy named ${name} exists`);
  const resync = async (policyId: string) => deps.policySchedules?.syncPolicy(policyId);

  return async (app) => {
    app.get(
      "/policies",
      {
        schema: {
          tags: ["policies"],
          summary: "List policies (by name)",
          querystring: pageQuerySchema.extend(policyListQuerySchema.shape),
          response: { 200: pageSchema(policySchema) },
        },
      },
      async (request) => {
        const q = request.query;
        const where: Prisma.PolicyWhereInput = { tenantId: tenantOf(request) };
        if (q.repositoryId) where.repositoryId = q.repositoryId;
        if (q.search) where.name = { contains: q.search, mode: "insensitive" };
        if (q.cursor) {
          const [name, id] = decodeCursor(q.cursor, 2) as [string, string];
          where.OR = [{ name: { gt: name } }, { name, id: { gt: id } }];
        }
        const rows = await catalog.policy.findMany({
          where,
          orderBy: [{ name: "asc" }, { id: "asc" }],
          take: q.limit + 1,
        });
        return pageOf(rows, q.limit, (p) => [p.name, p.id], policyOut);
      },
    );

    app.get(
      "/policies/:id",
      {
        schema: {
          tags: ["policies"],
          summary: "One policy",
          params: idParamsSchema,
          response: { 200: policySchema },
        },
      },
      async (request) => policyOut(await find(tenantOf(request), request.params.id)),
    );

    app.post(
      "/policies",
      {
        schema: {
          tags: ["policies"],
          summary: "Create a policy",
          body: createPolicyRequestSchema,
          response: { 201: policySchema },
        },
      },
      async (request, reply) => {
        const tenantId = tenantOf(request);
        const b = request.body;
        assertValidSchedule(b.scheduleCron, b.timezone);
        await assertRepository(tenantId, b.repositoryId);
        let policy: Policy;
        try {
          policy = await catalog.policy.create({
            data: {
              tenantId,
              name: b.name,
              description: b.description ?? null,
              enabled: b.enabled ?? true,
              scheduleCron: b.scheduleCron,
              timezone: b.timezone,
              windowStartMinute: b.windowStartMinute ?? null,
              windowMinutes: b.windowMinutes ?? null,
              retention: b.retention,
              volumeSelector: b.volumeSelector,
              preHook: b.preHook ?? null,
              postHook: b.postHook ?? null,
              bandwidthLimitBps: b.bandwidthLimitBps == null ? null : BigInt(b.bandwidthLimitBps),
              repositoryId: b.repositoryId,
            },
          });
        } catch (err) {
          if (isUniqueViolation(err)) throw nameTaken(b.name);
          throw err;
        }
        await audit(deps, request, {
          action: "policy.create",
          targetType: "policy",
          targetId: policy.id,
          details: { name: policy.name, revision: policy.revision },
        });
        await resync(policy.id);
        return reply.status(201).send(policyOut(policy));
      },
    );

    app.patch(
      "/policies/:id",
      {
        schema: {
          tags: ["policies"],
          summary: "Change a policy; its revision goes up by one",
          params: idParamsSchema,
          body: updatePolicyRequestSchema,
          response: { 200: policySchema },
        },
      },
      async (request) => {
        const tenantId = tenantOf(request);
        const before = await find(tenantId, request.params.id);
        const b = request.body;
        const merged = {
          scheduleCron: b.scheduleCron ?? before.scheduleCron,
          timezone: b.timezone ?? before.timezone,
          windowStartMinute:
            b.windowStartMinute === undefined ? before.windowStartMinute : b.windowStartMinute,
          windowMinutes: b.windowMinutes === undefined ? before.windowMinutes : b.windowMinutes,
        };
        if ((merged.windowStartMinute == null) !== (merged.windowMinutes == null)) {
          throw new BulwarkError(
            "BULWARK_GENERAL_VALIDATION",
            "windowStartMinute and windowMinutes go together",
            {
              details: { issues: [{ path: "windowMinutes", message: "set both window fields or neither" }] },
            },
          );
        }
        assertValidSchedule(merged.scheduleCron, merged.timezone);
        if (b.repositoryId !== undefined) await assertRepository(tenantId, b.repositoryId);
        const data: Prisma.PolicyUpdateInput = { revision: { increment: 1 } };
        if (b.name !== undefined) data.name = b.name;
        if (b.description !== undefined) data.description = b.description;
        if (b.enabled !== undefined) data.enabled = b.enabled;
        if (b.scheduleCron !== undefined) data.scheduleCron = b.scheduleCron;
        if (b.timezone !== undefined) data.timezone = b.timezone;
        if (b.windowStartMinute !== undefined) data.windowStartMinute = b.windowStartMinute;
        if (b.windowMinutes !== undefined) data.windowMinutes = b.windowMinutes;
        if (b.retention !== undefined) data.retention = b.retention;
        if (b.volumeSelector !== undefined) data.volumeSelector = b.volumeSelector;
        if (b.preHook !== undefined) data.preHook = b.preHook;
        if (b.postHook !== undefined) data.postHook = b.postHook;
        if (b.bandwidthLimitBps !== undefined) {
          data.bandwidthLimitBps = b.bandwidthLimitBps === null ? null : BigInt(b.bandwidthLimitBps);
        }
        if (b.repositoryId !== undefined) data.repository = { connect: { id: b.repositoryId } };
        let policy: Policy;
        try {
          policy = await catalog.policy.update({ where: { id: before.id }, data });
        } catch (err) {
          if (isUniqueViolation(err)) throw nameTaken(String(b.name));
          throw err;
        }
        await audit(deps, request, {
          action: "policy.update",
          targetType: "policy",
          targetId: policy.id,
          details: {
            changed: Object.keys(b).filter((k) => b[k as keyof typeof b] !== undefined),
            revision: policy.revision,
          },
        });
        await resync(policy.id);
        return policyOut(policy);
      },
    );

    app.delete(
      "/policies/:id",
      {
        schema: {
          tags: ["policies"],
          summary: "Delete a policy and its assignments",
          params: idParamsSchema,
        },
      },
      async (request, reply) => {
        const policy = await find(tenantOf(request), request.params.id);
        await catalog.policy.delete({ where: { id: policy.id } });
        await audit(deps, request, {
          action: "policy.delete",
          targetType: "policy",
          targetId: policy.id,
          details: { name: policy.name },
        });
        await resync(policy.id);
        return reply.status(204).send();
      },
    );

    app.get(
      "/assignments",
      {
        schema: {
          tags: ["policies"],
          summary: "List policy assignments",
          querystring: pageQuerySchema.extend(assignmentListQuerySchema.shape),
          response: { 200: pageSchema(assignmentSchema) },
        },
      },
      async (request) => {
        const q = request.query;
        const where: Prisma.PolicyAssignmentWhereInput = { policy: { tenantId: tenantOf(request) } };
        if (q.policyId) where.policyId = q.policyId;
        if (q.groupId) where.groupId = q.groupId;
        if (q.agentId) where.agentId = q.agentId;
        if (q.cursor) {
          const [createdAt, id] = decodeCursor(q.cursor, 2);
          const at = cursorDate(createdAt as string);
          where.AND = [{ OR: [{ createdAt: { gt: at } }, { createdAt: at, id: { gt: String(id) } }] }];
        }
        const rows = await catalog.policyAssignment.findMany({
          where,
          orderBy: [{ createdAt: "asc" }, { id: "asc" }],
          take: q.limit + 1,
        });
        return pageOf(rows, q.limit, (a) => [a.createdAt.toISOString(), a.id], assignmentOut);
      },
    );

    app.post(
      "/assignments",
      {
        schema: {
          tags: ["policies"],
          summary: "Assign a policy to a group or to one machine",
          body: createAssignmentRequestSchema,
          response: { 201: assignmentSchema },
        },
      },
      async (request, reply) => {
        const tenantId = tenantOf(request);
        const b = request.body;
        await find(tenantId, b.policyId);
        if (b.groupId !== undefined) {
          const group = await catalog.group.findFirst({
            where: { id: b.groupId, tenantId },
            select: { id: true },
          });
          if (!group) throw notFound("group", b.groupId);
        }
        if (b.agentId !== undefined) {
          const agent = await catalog.agent.findFirst({
            where: { id: b.agentId, tenantId },
            select: { id: true },
          });
          if (!agent) throw notFound("agent", b.agentId);
        }
        let assignment: PolicyAssignment;
        try {
          assignment = await catalog.policyAssignment.create({
            data: {
              policyId: b.policyId,
              groupId: b.groupId ?? null,
              agentId: b.agentId ?? null,
              priority: b.priority,
              createdAt: deps.now(),
            },
          });
        } catch (err) {
          if (isUniqueViolation(err))
            throw new BulwarkError("BULWARK_API_CONFLICT", "the policy is already assigned there");
          throw err;
        }
        await audit(deps, request, {
          action: "policy.assign",
          targetType: "policy",
          targetId: b.policyId,
          details: {
            assignmentId: assignment.id,
            groupId: assignment.groupId,
            agentId: assignment.agentId,
            priority: assignment.priority,
          },
        });
        await resync(b.policyId);
        return reply.status(201).send(assignmentOut(assignment));
      },
    );

    app.delete(
      "/assignments/:id",
      { schema: { tags: ["policies"], summary: "Remove a policy assignment", params: idParamsSchema } },
      async (request, reply) => {
        const assignment = await catalog.policyAssignment.findFirst({
          where: { id: request.params.id, policy: { tenantId: tenantOf(request) } },
        });
        if (!assignment) throw notFound("assignment", request.params.id);
        await catalog.policyAssignment.delete({ where: { id: assignment.id } });
        await audit(deps, request, {
          action: "policy.unassign",
          targetType: "policy",
          targetId: assignment.policyId,
          details: { assignmentId: assignment.id, groupId: assignment.groupId, agentId: assignment.agentId },
        });
        await resync(assignment.policyId);
        return reply.status(204).send();
      },
    );
  };
}
