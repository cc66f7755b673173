// Helpers routes share: the caller as an audit actor, audit writes, tenant-scoped lookups.

import type { AuditOutcome } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyRequest } from "fastify";
import { writeAudit } from "../audit/write.js";
import type { Actor, ApiDeps } from "./deps.js";
import { principalOf } from "./rbac.js";

export function actorOf(request: FastifyRequest): Actor {
  const principal = principalOf(request);
  return {
    tenantId: principal.user.tenantId,
    userId: principal.user.id,
    name: principal.user.email,
    via: principal.via,
    ip: request.ip ?? null,
  };
}

export function tenantOf(request: FastifyRequest): string {
  return principalOf(request).user.tenantId;
}

export interface AuditAction {
  action: string;
  targetType?: string;
  targetId?: string;
  outcome?: AuditOutcome;
  /** Never a secret. */
  details?: Record<string, unknown>;
}

/** Appends an audit row for the caller of `request` (actor USER or API_TOKEN). */
export async function audit(deps: ApiDeps, request: FastifyRequest, event: AuditAction): Promise<void> {
  const actor = actorOf(request);
  const principal = principalOf(request);
  await writeAudit(deps.catalog, {
    tenantId: actor.tenantId,
    actorType: actor.via === "api-token" ? "API_TOKEN" : "USER",
    actorId: actor.userId,
    actorName: actor.name,
    action: event.action,
    targetType: event.targetType,
    targetId: event.targetId,
    outcome: event.outcome ?? "SUCCESS",
    ip: actor.ip,
    details: {
      ...(principal.via === "api-token" ? { apiTokenId: principal.apiTokenId } : {}),
      ...(event.details ?? {}),
    } as never,
    at: deps.now(),
  });
}

export function notFound(what: string, id: string): BulwarkError {
  return new BulwarkError("BULWARK_API_NOT_FOUND", `no ${what} ${id}`, { details: { [`${what}Id`]: id } });
}

/** Prisma's unique-constraint violation, mapped to a 409 that names the taken field. */
export function isUniqueViolation(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === "P2002";
}
