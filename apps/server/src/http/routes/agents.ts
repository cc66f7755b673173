// Machines: list with filters, detail with volumes, last restore point per volume, recovery-point
// status and effective policy; tags and groups; revocation (when enrollment is wired).

import {
  type AgentDetail,
  type Agent as AgentOut,
  agentDetailSchema,
  agentListQuerySchema,
  agentSchema,
  idParamsSchema,
  pageQuerySchema,
  pageSchema,
  updateAgentRequestSchema,
} from "@bulwark/api";
import type { Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { effectivePolicy } from "../../jobs/policy.js";
import { actorOf, audit, notFound, tenantOf } from "../context.js";
import type { ApiDeps } from "../deps.js";
import type { Agent, Policy } from "../models.js";
import { decodeCursor, pageOf } from "../pagination.js";
import { previousRuns } from "../schedule.js";
import { iso, num } from "../serialize.js";

type AgentWithGroups = Agent & { groups: { group: { id: string; name: string } }[] };

function agentOut(a: AgentWithGroups): AgentOut {
  return {
    id: a.id,
    hostname: a.hostname,
    os: a.os,
    osVersion: a.osVersion,
    arch: a.arch,
    agentVersion: a.agentVersion,
    status: a.status,
    online: a.status === "ACTIVE" && a.connectedNode !== null,
    tags: a.tags,
    groups: a.groups
      .map((g) => ({ id: g.group.id, name: g.group.name }))
      .sort((x, y) => x.name.localeCompare(y.name)),
    enrolledAt: iso(a.enrolledAt),
    lastSeenAt: iso(a.lastSeenAt),
    revokedAt: iso(a.revokedAt),
  };
}

/** See rpoStatusSchema in @bulwark/api. Also counted by /metrics (bulwark_rpo_violations). */
export function rpoStatus(
  policy: Policy | null,
  lastCapturedAt: Date | null,
  now: Date,
): AgentDetail["volumes"][number]["rpo"] {
  if (!policy?.enabled) return "unscheduled";
  if (!lastCapturedAt) return "none";
  const [, beforeLatest] = previousRuns(policy.scheduleCron, policy.timezone, now, 2);
  if (beforeLatest === undefined) return "ok";
  return lastCapturedAt.getTime() >= beforeLatest.getTime() ? "ok" : "late";
}

export function agentRoutes(deps: ApiDeps): FastifyPluginAsyncZod {
  const { catalog } = deps;
  const includeGroups = { groups: { include: { group: { select: { id: true, name: true } } } } } as const;
  const find = async (tenantId: string, id: string) => {
    const agent = await catalog.agent.findFirst({ where: { id, tenantId }, include: includeGroups });
    if (!agent) throw notFound("agent", id);
    return agent;
  };

  const detail = async (agent: AgentWithGroups): Promise<AgentDetail> => {
    const now = deps.now();
    // The job system's own resolution, so the console shows the policy the scheduler uses.
    const eff = await effectivePolicy(catalog, agent.id);
    const policy = eff?.policy ?? null;
    const volumes = await catalog.volume.findMany({
      where: { agentId: agent.id },
      orderBy: [{ devicePath: "asc" }],
    });
    const lastBackups = await Promise.all(
      volumes.map((v) =>
        catalog.backup.findFirst({
          where: { volumeId: v.id, status: "AVAILABLE" },
          orderBy: { capturedAt: "desc" },
          select: { id: true, capturedAt: true, storedBytes: true },
        }),
      ),
    );
    return {
      ...agentOut(agent),
      machineId: agent.machineId,
      volumes: volumes.map((v, i) => {
        const last = lastBackups[i] ?? null;
        return {
          id: v.id,
          key: v.key,
          kind: v.kind,
          devicePath: v.devicePath,
          mountPoint: v.mountPoint,
          fsType: v.fsType,
          label: v.label,
          sizeBytes: num(v.sizeBytes),
          gone: v.goneAt !== null,
          lastBackup: last
            ? { id: last.id, capturedAt: iso(last.capturedAt), storedBytes: num(last.storedBytes) }
            : null,
          rpo: rpoStatus(policy, last?.capturedAt ?? null, now),
        };
      }),
      effectivePolicy:
        eff && policy
          ? {
              policyId: policy.id,
              name: policy.name,
              via: eff.source,
              groupId: eff.groupId,
              scheduleCron: policy.scheduleCron,
              timezone: policy.timezone,
              enabled: policy.enabled,
            }
          : null,
    };
  };

  return async (app) => {
    app.get(
      "/agents",
      {
        schema: {
          tags: ["agents"],
          summary: "List machines (by hostname) with filters",
          querystring: pageQuerySchema.extend(agentListQuerySchema.shape),
          response: { 200: pageSchema(agentSchema) },
        },
      },
      async (request) => {
        const q = request.query;
        const and: Prisma.AgentWhereInput[] = [{ tenantId: tenantOf(request) }];
        if (q.group) and.push({ groups: { some: { groupId: q.group } } });
        if (q.tag) and.push({ tags: { has: q.tag } });
        if (q.search) and.push({ hostname: { contains: q.search, mode: "insensitive" } });
        if (q.status === "revoked") and.push({ status: "REVOKED" });
        if (q.status === "online") and.push({ status: "ACTIVE", connectedNode: { not: null } });
        if (q.status === "offline") and.push({ status: "ACTIVE", connectedNode: null });
        if (q.cursor) {
          const [hostname, id] = decodeCursor(q.cursor, 2) as [string, string];
          and.push({ OR: [{ hostname: { gt: hostname } }, { hostname, id: { gt: id } }] });
        }
        const rows = await catalog.agent.findMany({
          where: { AND: and },
          include: includeGroups,
          orderBy: [{ hostname: "asc" }, { id: "asc" }],
          take: q.limit + 1,
        });
        return pageOf(rows, q.limit, (a) => [a.hostname, a.id], agentOut);
      },
    );

    app.get(
      "/agents/:id",
      {
        schema: {
          tags: ["agents"],
          summary: "One machine with its volumes, last restore points, RPO status and effective policy",
          params: idParamsSchema,
          response: { 200: agentDetailSchema },
        },
      },
      async (request) => detail(await find(tenantOf(request), request.params.id)),
    );

    app.patch(
      "/agents/:id",
      {
        schema: {
          tags: ["agents"],
          summary: "Replace a machine's tags and/or group memberships",
          params: idParamsSchema,
          body: updateAgentRequestSchema,
          response: { 200: agentDetailSchema },
        },
      },
      async (request) => {
        const tenantId = tenantOf(request);
        const before = await find(tenantId, request.params.id);
        const { tags, groupIds } = request.body;
        if (groupIds !== undefined) {
          const unique = [...new Set(groupIds)];
          const found = await catalog.group.findMany({
            where: { id: { in: unique }, tenantId },
            select: { id: true },
          });
          const missing = unique.filter((id) => !found.some((g) => g.id === id));
          if (missing.length > 0) throw notFound("group", missing.join(", "));
        }
        await catalog.$transaction(async (tx) => {
          if (tags !== undefined)
            await tx.agent.update({ where: { id: before.id }, data: { tags: [...new Set(tags)] } });
          if (groupIds !== undefined) {
            await tx.agentGroup.deleteMany({ where: { agentId: before.id } });
            await tx.agentGroup.createMany({
              data: [...new Set(groupIds)].map((groupId) => ({ agentId: before.id, groupId })),
            });
          }
        });
        await audit(deps, request, {
          action: "agent.update",
          targetType: "agent",
          targetId: before.id,
          details: {
            ...(tags !== undefined ? { tags: { from: before.tags, to: tags } } : {}),
            ...(groupIds !== undefined
              ? { groupIds: { from: before.groups.map((g) => g.group.id), to: groupIds } }
              : {}),
          },
        });
        return detail(await find(tenantId, before.id));
      },
    );

    const revocation = deps.agentRevocation;
    if (revocation) {
      app.post(
        "/agents/:id/revoke",
        {
          schema: {
            tags: ["agents"],
            summary: "Revoke a machine: its certificates stop working and its control stream closes",
            params: idParamsSchema,
            response: { 200: agentSchema },
          },
        },
        async (request) => {
          const tenantId = tenantOf(request);
          const agent = await find(tenantId, request.params.id);
          if (agent.status === "REVOKED")
            throw new BulwarkError("BULWARK_API_INVALID_STATE", "the machine is already revoked");
          // The enrollment service writes the agent.revoke audit row itself.
          await revocation.revoke(actorOf(request), agent.id);
          return agentOut(await find(tenantId, agent.id));
        },
      );
    }
  };
}
