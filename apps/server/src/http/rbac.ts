// Authentication and authorization for every /api/v1 route, in one place:
// - at registration, a route under /api/v1 without an entry in auth/permissions.ts is refused,
//   so the server cannot start with an unprotected route;
// - on each request (onRequest, before body validation), the caller is identified by API token
//   (Authorization: Bearer) or session cookie, the role is checked against the table, and
//   state-changing requests made with a cookie must carry the session's CSRF token.

import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { API_PREFIX, isAllowed, PUBLIC, permissionFor } from "../auth/permissions.js";
import { effectiveTokenRole, type Principal } from "../auth/principal.js";
import { resolveSession } from "../auth/sessions.js";
import { API_TOKEN_PATTERN, digestsEqual, sha256Hex } from "../auth/tokens.js";
import type { ApiDeps } from "./deps.js";

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export const CSRF_HEADER = "x-csrf-token";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
/** lastUsedAt is written at most this often per token. */
const TOKEN_TOUCH_INTERVAL_MS = 60_000;

export function sessionCookieName(secure: boolean): string {
  // __Host- cookies are only accepted when Secure, for path /, without Domain: no subdomain can plant one.
  return secure ? "__Host-bulwark_session" : "bulwark_session";
}
export function csrfCookieName(secure: boolean): string {
  return secure ? "__Host-bulwark_csrf" : "bulwark_csrf";
}

/** One registered /api/v1 route, as the RBAC walk test and the OpenAPI check see them. */
export interface ApiRoute {
  method: string;
  url: string;
}

export function registerRbac(app: FastifyInstance, deps: ApiDeps): ApiRoute[] {
  const routes: ApiRoute[] = [];
  app.decorateRequest("principal", undefined);

  app.addHook("onRoute", (route) => {
    if (!route.url.startsWith(API_PREFIX)) return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (permissionFor(method, route.url) === undefined) {
        throw new Error(
          `${method} ${route.url} has no entry in auth/permissions.ts; every API route needs one`,
        );
      }
      if (method !== "HEAD") routes.push({ method, url: route.url });
    }
  });

  app.addHook("onRequest", async (request) => {
    const url = request.routeOptions.url;
    if (url === undefined || !url.startsWith(API_PREFIX)) return;
    const permission = permissionFor(request.method, url);
    if (permission === undefined) throw new BulwarkError("BULWARK_AUTH_FORBIDDEN");
    if (permission === PUBLIC) return;
    const principal = await authenticate(request, deps);
    if (!isAllowed(permission, principal.role)) {
      throw new BulwarkError(
        "BULWARK_AUTH_FORBIDDEN",
        `role ${principal.role} may not ${request.method} ${url}`,
      );
    }
    if (principal.via === "session" && !SAFE_METHODS.has(request.method)) {
      const header = request.headers[CSRF_HEADER];
      if (typeof header !== "string" || !digestsEqual(sha256Hex(header), principal.csrfTokenHash)) {
        throw new BulwarkError("BULWARK_AUTH_CSRF");
      }
    }
    request.principal = principal;
  });
  return routes;
}

async function authenticate(request: FastifyRequest, deps: ApiDeps): Promise<Principal> {
  const now = deps.now();
  const authorization = request.headers.authorization;
  // A request with an Authorization header is judged by it alone: browsers never add one on their
  // own, which is why bearer requests need no CSRF token.
  if (authorization !== undefined) {
    const match = /^Bearer (\S+)$/.exec(authorization);
    const token = match?.[1];
    if (token === undefined || !API_TOKEN_PATTERN.test(token)) throw unauthenticated();
    return authenticateApiToken(deps.catalog, token, now);
  }
  const cookie = request.cookies[sessionCookieName(deps.auth.secureCookies)];
  if (cookie === undefined || cookie === "") throw unauthenticated();
  const session = await resolveSession(deps.catalog, cookie, now, deps.auth.session);
  if (!session) throw unauthenticated();
  return {
    via: "session",
    user: session.user,
    role: session.user.role,
    sessionId: session.id,
    csrfTokenHash: session.csrfTokenHash,
  };
}

async function authenticateApiToken(catalog: Catalog, token: string, now: Date): Promise<Principal> {
  const row = await catalog.apiToken.findUnique({
    where: { tokenHash: sha256Hex(token) },
    include: { user: true },
  });
  if (!row || row.revokedAt !== null || row.user.disabledAt !== null) throw unauthenticated();
  if (row.expiresAt !== null && row.expiresAt.getTime() <= now.getTime()) throw unauthenticated();
  if (row.lastUsedAt === null || now.getTime() - row.lastUsedAt.getTime() >= TOKEN_TOUCH_INTERVAL_MS) {
    await catalog.apiToken.update({ where: { id: row.id }, data: { lastUsedAt: now } });
  }
  return {
    via: "api-token",
    user: row.user,
    role: effectiveTokenRole(row.user.role, row.role),
    apiTokenId: row.id,
  };
}

function unauthenticated(): BulwarkError {
  return new BulwarkError("BULWARK_AUTH_UNAUTHENTICATED");
}

/** The principal the RBAC hook attached; routes behind a role check always have one. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new BulwarkError("BULWARK_AUTH_UNAUTHENTICATED");
  return request.principal;
}
