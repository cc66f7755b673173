// POST /auth/login, /auth/logout; GET /auth/me; own sessions.

import {
  idParamsSchema,
  loginRequestSchema,
  loginResponseSchema,
  meResponseSchema,
  sessionSchema,
} from "@bulwark/api";
import { BulwarkError, isBulwarkError } from "@bulwark/errors";
import type { FastifyReply } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { writeAudit } from "../../audit/write.js";
import { verifyAgainstDummy, verifyPassword } from "../../auth/password.js";
import { LoginRateLimiter } from "../../auth/rate-limit.js";
import { createSession, isSessionLive } from "../../auth/sessions.js";
import { ensureDefaultTenant } from "../../auth/tenant.js";
import { audit, notFound } from "../context.js";
import type { ApiDeps } from "../deps.js";
import { csrfCookieName, principalOf, sessionCookieName } from "../rbac.js";
import { iso } from "../serialize.js";
import { userOut } from "./users.js";

export function authRoutes(deps: ApiDeps): FastifyPluginAsyncZod {
  const limiter = new LoginRateLimiter(deps.redis, deps.auth.loginRateLimit);
  const secure = deps.auth.secureCookies;

  const clearCookies = (reply: FastifyReply) => {
    const base = { path: "/", secure, sameSite: "strict" as const };
    reply.clearCookie(sessionCookieName(secure), { ...base, httpOnly: true });
    reply.clearCookie(csrfCookieName(secure), base);
  };

  return async (app) => {
    app.post(
      "/auth/login",
      {
        schema: {
          tags: ["auth"],
          summary: "Log in with e-mail and password; sets the session cookie and returns the CSRF token",
          body: loginRequestSchema,
          response: { 200: loginResponseSchema },
        },
      },
      async (request, reply) => {
        const email = request.body.email.trim().toLowerCase();
        const ip = request.ip;
        const tenantId = await ensureDefaultTenant(deps.catalog);
        const now = deps.now();
        const failed = async (outcome: "FAILURE" | "DENIED", userId: string | null, reason: string) =>
          writeAudit(deps.catalog, {
            tenantId,
            actorType: "USER",
            actorId: userId,
            actorName: email,
            action: "auth.login",
            outcome,
            ip,
            details: { reason },
            at: now,
          });
        try {
          await limiter.check(email, ip);
        } catch (err) {
          if (isBulwarkError(err, "BULWARK_AUTH_RATE_LIMITED")) await failed("DENIED", null, "rate-limited");
          else await failed("FAILURE", null, "throttle-unavailable");
          throw err;
        }
        const user = await deps.catalog.user.findUnique({ where: { tenantId_email: { tenantId, email } } });
        // Unknown account, disabled account and wrong password take the same time and get the same answer.
        const ok =
          user && user.disabledAt === null
            ? await verifyPassword(request.body.password, user.passwordHash)
            : await verifyAgainstDummy(request.body.password);
        if (!user || !ok) {
          await limiter.recordFailure(email, ip);
          await failed(
            "FAILURE",
            user?.id ?? null,
            !user ? "unknown-user" : user.disabledAt ? "disabled" : "password",
          );
          throw new BulwarkError("BULWARK_AUTH_INVALID_CREDENTIALS");
        }
        await limiter.recordSuccess(email);
        const session = await createSession(deps.catalog, {
          userId: user.id,
          ip,
          userAgent: request.headers["user-agent"] ?? null,
          now,
          lifetime: deps.auth.session,
        });
        const updated = await deps.catalog.user.update({
          where: { id: user.id },
          data: { lastLoginAt: now },
        });
        await writeAudit(deps.catalog, {
          tenantId,
          actorType: "USER",
          actorId: user.id,
          actorName: user.email,
          action: "auth.login",
          targetType: "session",
          targetId: session.id,
          outcome: "SUCCESS",
          ip,
          at: now,
        });
        const cookie = { path: "/", secure, sameSite: "strict" as const, expires: session.expiresAt };
        reply.setCookie(sessionCookieName(secure), session.token, { ...cookie, httpOnly: true });
        // Readable by the console's script, so it can send the x-csrf-token header after a reload.
        reply.setCookie(csrfCookieName(secure), session.csrfToken, { ...cookie, httpOnly: false });
        return { user: userOut(updated), csrfToken: session.csrfToken, expiresAt: iso(session.expiresAt) };
      },
    );

    app.post(
      "/auth/logout",
      { schema: { tags: ["auth"], summary: "End the current console session" } },
      async (request, reply) => {
        const principal = principalOf(request);
        if (principal.via !== "session") {
          throw new BulwarkError(
            "BULWARK_API_INVALID_STATE",
            "an API token has no session to end; revoke the token with DELETE /api/v1/api-tokens/:id",
          );
        }
        await deps.catalog.session.update({
          where: { id: principal.sessionId },
          data: { revokedAt: deps.now() },
        });
        await audit(deps, request, {
          action: "auth.logout",
          targetType: "session",
          targetId: principal.sessionId,
        });
        clearCookies(reply);
        return reply.status(204).send();
      },
    );

    app.get(
      "/auth/me",
      {
        schema: {
          tags: ["auth"],
          summary: "The caller and the role in effect",
          response: { 200: meResponseSchema },
        },
      },
      async (request) => {
        const principal = principalOf(request);
        const user = await deps.catalog.user.findUniqueOrThrow({ where: { id: principal.user.id } });
        return { user: userOut(user), role: principal.role, via: principal.via };
      },
    );

    app.get(
      "/auth/sessions",
      {
        schema: {
          tags: ["auth"],
          summary: "The caller's live console sessions",
          response: { 200: sessionSchema.array() },
        },
      },
      async (request) => {
        const principal = principalOf(request);
        const now = deps.now();
        const rows = await deps.catalog.session.findMany({
          where: { userId: principal.user.id, revokedAt: null, expiresAt: { gt: now } },
          orderBy: { createdAt: "desc" },
          take: 200,
        });
        return rows
          .filter((s) => isSessionLive(s, now, deps.auth.session))
          .map((s) => ({
            id: s.id,
            createdAt: iso(s.createdAt),
            lastSeenAt: iso(s.lastSeenAt),
            expiresAt: iso(s.expiresAt),
            ip: s.ip,
            userAgent: s.userAgent,
            current: principal.via === "session" && principal.sessionId === s.id,
          }));
      },
    );

    app.delete(
      "/auth/sessions/:id",
      {
        schema: {
          tags: ["auth"],
          summary: "Revoke one of the caller's sessions (e.g. a forgotten login elsewhere)",
          params: idParamsSchema,
        },
      },
      async (request, reply) => {
        const principal = principalOf(request);
        const { count } = await deps.catalog.session.updateMany({
          where: { id: request.params.id, userId: principal.user.id, revokedAt: null },
          data: { revokedAt: deps.now() },
        });
        if (count === 0) throw notFound("session", request.params.id);
        await audit(deps, request, {
          action: "auth.session.revoke",
          targetType: "session",
          targetId: request.params.id,
        });
        if (principal.via === "session" && principal.sessionId === request.params.id) clearCookies(reply);
        return reply.status(204).send();
      },
    );
  };
}
