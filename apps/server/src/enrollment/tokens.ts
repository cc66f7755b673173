import type { ActorType, Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import { z } from "zod";
import { writeAudit } from "../audit/write.js";
import { type EnrollmentEndpoint, hashEnrollmentToken, newEnrollmentToken, tokenFileText } from "./token.js";

// Admin side of enrollment tokens: mint (the plaintext is returned once and never stored), list,
// revoke. Used by `bulwark-server token create` and by the REST routes.

/** A token lives at most this long: enrollment is a deliberate act, not a standing invitation. */
export const MAX_TOKEN_TTL_S = 30 * 24 * 3600;
/** And at least this long, so a token survives being copied to the machine. */
export const MIN_TOKEN_TTL_S = 60;
/** Default when an admin does not say: a working day. */
export const DEFAULT_TOKEN_TTL_S = 24 * 3600;

export const TAG_PATTERN = /^[A-Za-z0-9._:-]+$/;

/** Who performs an admin action, for the audit log. */
export interface Actor {
  type: Exclude<ActorType, "AGENT">;
  id?: string;
  name?: string;
}

const SYSTEM_ACTOR: Actor = { type: "SYSTEM" };

export const mintTokenInputSchema = z.object({
  tenantId: z.uuid(),
  createdById: z.uuid().optional(),
  groupId: z.uuid().optional(),
  tags: z.array(z.string().min(1).max(64).regex(TAG_PATTERN)).max(32).optional(),
  ttlSeconds: z.number().int().min(MIN_TOKEN_TTL_S).max(MAX_TOKEN_TTL_S),
});

export type MintTokenInput = z.input<typeof mintTokenInputSchema>;

export interface MintedToken {
  id: string;
  /** The plaintext token: show it once, never log it. */
  token: string;
  expiresAt: Date;
  /** The token file for the agent (token, addresses, CA pin). Secret like the token. */
  tokenFile: string;
}

export interface TokenOptions {
  now?: () => Date;
  actor?: Actor;
}

function validation(error: z.ZodError): BulwarkError {
  const fields = error.issues.map((i) => ({ field: i.path.join("."), problem: i.message }));
  return new BulwarkError(
    "BULWARK_GENERAL_VALIDATION",
    `invalid input: ${fields.map((f) => `${f.field}: ${f.problem}`).join("; ")}`,
    { details: { fields } },
  );
}

export async function mintEnrollmentToken(
  catalog: Catalog,
  input: MintTokenInput,
  opts: TokenOptions & { endpoint: EnrollmentEndpoint },
): Promise<MintedToken> {
  const parsed = mintTokenInputSchema.safeParse(input);
  if (!parsed.success) throw validation(parsed.error);
  const { tenantId, createdById, groupId, tags, ttlSeconds } = parsed.data;
  const now = (opts.now ?? (() => new Date()))();
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
  const token = newEnrollmentToken();
  const actor = opts.actor ?? (createdById ? { type: "USER" as const, id: createdById } : SYSTEM_ACTOR);
  const row = await catalog.$transaction(async (tx) => {
    if (groupId) {
      const group = await tx.group.findFirst({ where: { id: groupId, tenantId }, select: { id: true } });
      if (!group) {
        throw new BulwarkError("BULWARK_ENROLL_GROUP_NOT_FOUND", `no group ${groupId} in this tenant`, {
          details: { groupId },
        });
      }
    }
    const created = await tx.enrollmentToken.create({
      data: {
        tenantId,
        tokenHash: hashEnrollmentToken(token),
        createdById: createdById ?? null,
        groupId: groupId ?? null,
        tags: tags ?? [],
        createdAt: now,
        expiresAt,
      },
    });
    await writeAudit(tx, {
      tenantId,
      actorType: actor.type,
      actorId: actor.id ?? null,
      actorName: actor.name ?? null,
      action: "enrollment.token.create",
      outcome: "SUCCESS",
      targetType: "enrollment_token",
      targetId: created.id,
      details: { groupId: groupId ?? null, tags: tags ?? [], expiresAt: expiresAt.toISOString() },
      at: now,
    });
    return created;
  });
  return { id: row.id, token, expiresAt, tokenFile: tokenFileText(opts.endpoint, token, expiresAt) };
}

export type TokenState = "active" | "used" | "expired" | "revoked";

export interface EnrollmentTokenSummary {
  id: string;
  state: TokenState;
  createdAt: Date;
  createdById: string | null;
  expiresAt: Date;
  usedAt: Date | null;
  usedByAgent: string | null;
  revokedAt: Date | null;
  groupId: string | null;
  tags: string[];
}

function stateOf(
  row: { usedAt: Date | null; revokedAt: Date | null; expiresAt: Date },
  now: Date,
): TokenState {
  if (row.usedAt) return "used";
  if (row.revokedAt) return "revoked";
  if (row.expiresAt <= now) return "expired";
  return "active";
}

/** The tenant's tokens, newest first; never the hash. */
export async function listEnrollmentTokens(
  catalog: Catalog,
  input: { tenantId: string; state?: TokenState },
  opts: { now?: () => Date } = {},
): Promise<EnrollmentTokenSummary[]> {
  const now = (opts.now ?? (() => new Date()))();
  const rows = await catalog.enrollmentToken.findMany({
    where: { tenantId: input.tenantId },
    orderBy: { createdAt: "desc" },
    omit: { tokenHash: true },
  });
  return rows
    .map((r) => ({
      id: r.id,
      state: stateOf(r, now),
      createdAt: r.createdAt,
      createdById: r.createdById,
      expiresAt: r.expiresAt,
      usedAt: r.usedAt,
      usedByAgent: r.usedByAgent,
      revokedAt: r.revokedAt,
      groupId: r.groupId,
      tags: r.tags,
    }))
    .filter((t) => input.state === undefined || t.state === input.state);
}

/**
 * Revokes an unused token: an Enroll with it is refused from now on. Revoking a token twice, or
 * one already used, changes nothing and writes no second audit row.
 */
export async function revokeEnrollmentToken(
  catalog: Catalog,
  input: { tenantId: string; tokenId: string },
  opts: TokenOptions = {},
): Promise<EnrollmentTokenSummary> {
  const now = (opts.now ?? (() => new Date()))();
  const actor = opts.actor ?? SYSTEM_ACTOR;
  if (!z.uuid().safeParse(input.tokenId).success) throw tokenNotFound(input.tokenId);
  return catalog.$transaction(async (tx) => {
    const changed = await tx.enrollmentToken.updateMany({
      where: { id: input.tokenId, tenantId: input.tenantId, revokedAt: null, usedAt: null },
      data: { revokedAt: now },
    });
    const row = await tx.enrollmentToken.findFirst({
      where: { id: input.tokenId, tenantId: input.tenantId },
      omit: { tokenHash: true },
    });
    if (!row) throw tokenNotFound(input.tokenId);
    if (changed.count === 1) {
      await writeAudit(tx, {
        tenantId: input.tenantId,
        actorType: actor.type,
        actorId: actor.id ?? null,
        actorName: actor.name ?? null,
        action: "enrollment.token.revoke",
        outcome: "SUCCESS",
        targetType: "enrollment_token",
        targetId: row.id,
        at: now,
      });
    }
    return {
      id: row.id,
      state: stateOf(row, now),
      createdAt: row.createdAt,
      createdById: row.createdById,
      expiresAt: row.expiresAt,
      usedAt: row.usedAt,
      usedByAgent: row.usedByAgent,
      revokedAt: row.revokedAt,
      groupId: row.groupId,
      tags: row.tags,
    };
  });
}

function tokenNotFound(id: string): BulwarkError {
  return new BulwarkError("BULWARK_ENROLL_TOKEN_NOT_FOUND", `no enrollment token ${id} in this tenant`, {
    details: { tokenId: id },
  });
}
