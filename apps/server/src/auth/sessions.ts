// Console sessions: a random cookie token (only its SHA-256 stored) bound to a CSRF token (also
// stored hashed). A session ends at the first of: logout or revocation, `idleSeconds` without a
// request, or `absoluteSeconds` after login however busy it is.

import type { Catalog } from "@bulwark/catalog";
import { newSecret, sha256Hex } from "./tokens.js";

export interface SessionLifetime {
  idleSeconds: number;
  absoluteSeconds: number;
}

/** 30 minutes idle, 12 hours at most: a help-desk shift, re-login after lunch. */
export const DEFAULT_SESSION_LIFETIME: SessionLifetime = { idleSeconds: 30 * 60, absoluteSeconds: 12 * 3600 };

/** lastSeenAt is written at most this often: one row update per minute per session, not per request. */
const TOUCH_INTERVAL_MS = 60_000;

export interface NewSession {
  id: string;
  token: string;
  csrfToken: string;
  expiresAt: Date;
}

export async function createSession(
  catalog: Catalog,
  input: {
    userId: string;
    ip: string | null;
    userAgent: string | null;
    now: Date;
    lifetime: SessionLifetime;
  },
): Promise<NewSession> {
  const token = newSecret();
  const csrfToken = newSecret();
  const expiresAt = new Date(input.now.getTime() + input.lifetime.absoluteSeconds * 1000);
  const row = await catalog.session.create({
    data: {
      userId: input.userId,
      tokenHash: sha256Hex(token),
      csrfTokenHash: sha256Hex(csrfToken),
      createdAt: input.now,
      lastSeenAt: input.now,
      expiresAt,
      ip: input.ip,
      userAgent: input.userAgent?.slice(0, 500) ?? null,
    },
    select: { id: true },
  });
  return { id: row.id, token, csrfToken, expiresAt };
}

/** The live session for a cookie token, or undefined (unknown, revoked, idle too long, past its end, user disabled). */
export async function resolveSession(catalog: Catalog, token: string, now: Date, lifetime: SessionLifetime) {
  const session = await catalog.session.findUnique({
    where: { tokenHash: sha256Hex(token) },
    include: { user: true },
  });
  if (!session || session.revokedAt !== null || session.user.disabledAt !== null) return undefined;
  if (session.expiresAt.getTime() <= now.getTime()) return undefined;
  if (session.lastSeenAt.getTime() + lifetime.idleSeconds * 1000 <= now.getTime()) return undefined;
  if (now.getTime() - session.lastSeenAt.getTime() >= TOUCH_INTERVAL_MS) {
    await catalog.session.update({ where: { id: session.id }, data: { lastSeenAt: now } });
  }
  return session;
}

/** Sessions of a user that are not revoked and not past their absolute end (idle ones are filtered by the caller). */
export function isSessionLive(
  session: { revokedAt: Date | null; expiresAt: Date; lastSeenAt: Date },
  now: Date,
  lifetime: SessionLifetime,
): boolean {
  return (
    session.revokedAt === null &&
    session.expiresAt.getTime() > now.getTime() &&
    session.lastSeenAt.getTime() + lifetime.idleSeconds * 1000 > now.getTime()
  );
}
