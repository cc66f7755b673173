import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.js";
import { createRequestRedis } from "../src/redis.js";
import { type ApiHarness, PASSWORD, sessionCookieHeader, startApiHarness } from "./support/api.js";

// Authentication against a real catalog and Redis: logins, session expiry on an injected clock,
// uniform failures, Redis-backed throttling, CSRF for cookie sessions, API tokens.

const IDLE_S = 600;
const ABSOLUTE_S = 3600;
/** Long enough that a run of scrypt-checked logins on a loaded machine stays inside one window. */
const WINDOW_S = 60;
const SHORT_WINDOW_S = 3;

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness("auth", {
    session: { idleSeconds: IDLE_S, absoluteSeconds: ABSOLUTE_S },
    loginRateLimit: { maxFailuresPerAccount: 3, maxFailuresPerIp: 8, windowSeconds: WINDOW_S },
  });
});
afterAll(async () => h?.close());

/** JSON of catalog rows (their BigInt IDs as strings), to search for leaked secrets. */
function stringify(value: unknown): string {
  return JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? v.toString() : v));
}

function login(email: string, password: string, ip = "10.0.0.1") {
  return h.app.inject({
    method: "POST",
    url: "/api/v1/auth/login",
    payload: { email, password },
    remoteAddress: ip,
  });
}

describe("login and sessions", () => {
  it("sets a __Host- session cookie (HttpOnly, Secure, SameSite=Strict) and returns the CSRF token", async () => {
    const user = await h.createUser("OPERATOR");
    const res = await login(user.email.toUpperCase(), PASSWORD);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.user).toMatchObject({ email: user.email, role: "OPERATOR", disabled: false });
    expect(body.csrfToken).toMatch(/^[\w-]{43}$/);
    const session = res.cookies.find((c) => c.name === "__Host-bulwark_session");
    expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict", path: "/" });
    expect(session?.domain).toBeUndefined();
    const csrf = res.cookies.find((c) => c.name === "__Host-bulwark_csrf");
    expect(csrf?.value).toBe(body.csrfToken);
    expect(csrf?.httpOnly).toBeFalsy();
    // Only hashes are stored.
    const row = await h.db.catalog.session.findFirstOrThrow({ where: { userId: user.id } });
    expect(row.tokenHash).toBe(
      createHash("sha256")
        .update(session?.value ?? "")
        .digest("hex"),
    );
    expect(row.csrfTokenHash).not.toBe(body.csrfToken);
    const me = await h.app.inject({
      method: "GET",
      url: "/api/v1/auth/me",
      headers: { cookie: sessionCookieHeader(res) },
    });
    expect(me.json()).toMatchObject({ role: "OPERATOR", via: "session", user: { id: user.id } });
  });

  it("answers a wrong password, an unknown user and a disabled user identically", async () => {
    const user = await h.createUser("HELPDESK");
    const disabled = await h.createUser("HELPDESK");
    await h.db.catalog.user.update({ where: { id: disabled.id }, data: { disabledAt: h.now() } });
    const answers = await Promise.all([
      login(user.email, "wrong password!", "10.0.1.1"),
      login("nobody@example.test", "wrong password!", "10.0.1.2"),
      login(disabled.email, PASSWORD, "10.0.1.3"),
    ]);
    for (const res of answers) {
      expect(res.statusCode).toBe(401);
      expect(res.json()).toEqual({
        error: {
          code: "BULWARK_AUTH_INVALID_CREDENTIALS",
          message: "The e-mail address or password is wrong, or the account is disabled.",
        },
      });
      expect(res.cookies).toHaveLength(0);
    }
    const failures = await h.db.catalog.auditEvent.findMany({
      where: { action: "auth.login", outcome: "FAILURE" },
    });
    expect(failures.map((f) => f.actorName).sort()).toEqual(
      [disabled.email, "nobody@example.test", user.email].sort(),
    );
    expect(stringify(failures)).not.toContain("wrong password");
  });

  it("logs out: the cookie stops working and the logout is audited", async () => {
    const user = await h.createUser("AUDITOR");
    const s = await h.login(user.email);
    const out = await h.app.inject({
      method: "POST",
      url: "/api/v1/auth/logout",
      headers: { cookie: s.cookie, "x-csrf-token": s.csrf },
    });
    expect(out.statusCode).toBe(204);
    expect(out.cookies.find((c) => c.name === "__Host-bulwark_session")?.value).toBe("");
    const me = await h.app.inject({ method: "GET", url: "/api/v1/auth/me", headers: { cookie: s.cookie } });
    expect(me.statusCode).toBe(401);
    expect(me.json().error.code).toBe("BULWARK_AUTH_UNAUTHENTICATED");
    const events = await h.db.catalog.auditEvent.findMany({
      where: { actorId: user.id },
      orderBy: { id: "asc" },
    });
    expect(events.map((e) => [e.action, e.outcome])).toEqual([
      ["auth.login", "SUCCESS"],
      ["auth.logout", "SUCCESS"],
    ]);
  });

  it("ends a session after the idle timeout", async () => {
    const user = await h.createUser("AUDITOR");
    const s = await h.login(user.email);
    const me = () => h.app.inject({ method: "GET", url: "/api/v1/auth/me", headers: { cookie: s.cookie } });
    h.advance((IDLE_S - 60) * 1000);
    expect((await me()).statusCode).toBe(200); // activity moves the idle deadline
    h.advance((IDLE_S - 60) * 1000);
    expect((await me()).statusCode).toBe(200);
    h.advance(IDLE_S * 1000);
    expect((await me()).statusCode).toBe(401);
  });

  it("ends a busy session at its absolute lifetime", async () => {
    const user = await h.createUser("AUDITOR");
    const s = await h.login(user.email);
    const me = () => h.app.inject({ method: "GET", url: "/api/v1/auth/me", headers: { cookie: s.cookie } });
    for (let t = 0; t < ABSOLUTE_S - 300; t += 300) {
      h.advance(300_000);
      expect((await me()).statusCode).toBe(200);
    }
    h.advance(300_000);
    expect((await me()).statusCode).toBe(401);
  });

  it("lists the caller's sessions and revokes one", async () => {
    const user = await h.createUser("OPERATOR");
    const a = await h.login(user.email);
    const b = await h.login(user.email);
    const list = await h.app.inject({
      method: "GET",
      url: "/api/v1/auth/sessions",
      headers: { cookie: a.cookie },
    });
    expect(list.statusCode).toBe(200);
    const sessions = list.json() as { id: string; current: boolean }[];
    expect(sessions).toHaveLength(2);
    const other = sessions.find((s) => !s.current);
    const del = await h.app.inject({
      method: "DELETE",
      url: `/api/v1/auth/sessions/${other?.id}`,
      headers: { cookie: a.cookie, "x-csrf-token": a.csrf },
    });
    expect(del.statusCode).toBe(204);
    expect(
      (await h.app.inject({ method: "GET", url: "/api/v1/auth/me", headers: { cookie: b.cookie } }))
        .statusCode,
    ).toBe(401);
    expect(
      (await h.app.inject({ method: "GET", url: "/api/v1/auth/me", headers: { cookie: a.cookie } }))
        .statusCode,
    ).toBe(200);
    // Someone else's session is not found, not revoked.
    const stranger = await h.createUser("OPERATOR");
    const c = await h.login(stranger.email);
    const steal = await h.app.inject({
      method: "DELETE",
      url: `/api/v1/auth/sessions/${sessions.find((s) => s.current)?.id}`,
      headers: { cookie: c.cookie, "x-csrf-token": c.csrf },
    });
    expect(steal.statusCode).toBe(404);
  });
});

describe("login throttling (Redis)", () => {
  it("locks an account after repeated failures, even for the right password", async () => {
    const user = await h.createUser("OPERATOR");
    for (let i = 0; i < 3; i++)
      expect((await login(user.email, "nope nope nope", "10.0.2.1")).statusCode).toBe(401);
    const locked = await login(user.email, PASSWORD, "10.0.2.2");
    expect(locked.statusCode).toBe(429);
    expect(locked.json().error.code).toBe("BULWARK_AUTH_RATE_LIMITED");
    expect(locked.json().error.details.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    const keys = await h.redis.keys(`${h.prefix}:login-fail:*`);
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.join()).not.toContain(user.email);
    const denied = await h.db.catalog.auditEvent.count({
      where: { actorName: user.email, outcome: "DENIED" },
    });
    expect(denied).toBe(1);
  });

  it("releases the lock when the window ends (another node with a short window, same Redis)", async () => {
    const node = buildApp({
      catalog: h.db.catalog,
      redis: h.redis,
      nodeName: "short-window",
      api: {
        loginRateLimit: {
          keyPrefix: `${h.prefix}-short`,
          maxFailuresPerAccount: 1,
          windowSeconds: SHORT_WINDOW_S,
        },
      },
    });
    try {
      const user = await h.createUser("OPERATOR");
      const attempt = (password: string) =>
        node.inject({ method: "POST", url: "/api/v1/auth/login", payload: { email: user.email, password } });
      expect((await attempt("wrong wrong wrong")).statusCode).toBe(401);
      expect((await attempt(PASSWORD)).statusCode).toBe(429);
      await new Promise((r) => setTimeout(r, SHORT_WINDOW_S * 1000 + 500));
      expect((await attempt(PASSWORD)).statusCode).toBe(200);
    } finally {
      await node.close();
      const keys = await h.redis.keys(`${h.prefix}-short:*`);
      if (keys.length > 0) await h.redis.del(...keys);
    }
  });

  it("refuses logins with 503 while Redis is down instead of letting unlimited guesses through", async () => {
    const deadRedis = createRequestRedis("redis://127.0.0.1:1");
    deadRedis.on("error", () => undefined);
    await deadRedis.connect().catch(() => undefined);
    const node = buildApp({ catalog: h.db.catalog, redis: deadRedis, nodeName: "no-redis" });
    try {
      const user = await h.createUser("OPERATOR");
      const res = await node.inject({
        method: "POST",
        url: "/api/v1/auth/login",
        payload: { email: user.email, password: PASSWORD },
      });
      expect(res.statusCode).toBe(503);
      expect(res.json().error.code).toBe("BULWARK_QUEUE_UNAVAILABLE");
      expect(res.cookies).toHaveLength(0);
    } finally {
      await node.close();
      deadRedis.disconnect();
    }
  });

  it("limits failures per client IP across accounts", async () => {
    const ip = "10.0.3.1";
    for (let i = 0; i < 8; i++) {
      expect((await login(`spray-${i}@example.test`, "guess guess", ip)).statusCode).toBe(401);
    }
    const user = await h.createUser("AUDITOR");
    expect((await login(user.email, PASSWORD, ip)).statusCode).toBe(429);
    expect((await login(user.email, PASSWORD, "10.0.3.2")).statusCode).toBe(200);
  });
});

describe("CSRF", () => {
  it("requires the session's token on state-changing cookie requests, not on reads", async () => {
    const admin = await h.createUser("ADMIN");
    const s = await h.login(admin.email);
    const post = (headers: Record<string, string>) =>
      h.app.inject({
        method: "POST",
        url: "/api/v1/groups",
        headers: { cookie: s.cookie, ...headers },
        payload: { name: `g-${Math.random()}` },
      });
    const missing = await post({});
    expect(missing.statusCode).toBe(403);
    expect(missing.json().error.code).toBe("BULWARK_AUTH_CSRF");
    const other = await h.login(admin.email);
    expect((await post({ "x-csrf-token": other.csrf })).json().error.code).toBe("BULWARK_AUTH_CSRF");
    expect((await post({ "x-csrf-token": s.csrf })).statusCode).toBe(201);
    expect(
      (await h.app.inject({ method: "GET", url: "/api/v1/groups", headers: { cookie: s.cookie } }))
        .statusCode,
    ).toBe(200);
  });

  it("does not apply to bearer API tokens (browsers never send them by themselves)", async () => {
    const bearer = await h.bearer("OPERATOR");
    const res = await h.app.inject({
      method: "POST",
      url: "/api/v1/groups",
      headers: { authorization: bearer },
      payload: { name: "bearer-made" },
    });
    expect(res.statusCode).toBe(201);
  });
});

describe("API tokens", () => {
  it("is shown once, stored as its SHA-256 only, records use, and stops working when revoked", async () => {
    const user = await h.createUser("OPERATOR");
    const s = await h.login(user.email);
    const created = await h.app.inject({
      method: "POST",
      url: "/api/v1/api-tokens",
      headers: { cookie: s.cookie, "x-csrf-token": s.csrf },
      payload: { name: "ci" },
    });
    expect(created.statusCode).toBe(201);
    const { token, apiToken } = created.json();
    expect(token).toMatch(/^bwk_[a-z0-9]{8}_[\w-]{43}$/);
    expect(token.startsWith(`${apiToken.prefix}_`)).toBe(true);
    const row = await h.db.catalog.apiToken.findUniqueOrThrow({ where: { id: apiToken.id } });
    expect(row.tokenHash).toBe(createHash("sha256").update(token).digest("hex"));
    expect(stringify(row)).not.toContain(token.split("_")[2]);
    const list = await h.app.inject({
      method: "GET",
      url: "/api/v1/api-tokens",
      headers: { cookie: s.cookie },
    });
    expect(JSON.stringify(list.json())).not.toContain(token);

    const me = await h.app.inject({
      method: "GET",
      url: "/api/v1/auth/me",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(me.json()).toMatchObject({ via: "api-token", role: "OPERATOR" });
    expect(
      (await h.db.catalog.apiToken.findUniqueOrThrow({ where: { id: apiToken.id } })).lastUsedAt,
    ).toEqual(h.now());

    const revoke = await h.app.inject({
      method: "DELETE",
      url: `/api/v1/api-tokens/${apiToken.id}`,
      headers: { authorization: `Bearer ${token}` },
    });
    expect(revoke.statusCode).toBe(204);
    const after = await h.app.inject({
      method: "GET",
      url: "/api/v1/auth/me",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(after.statusCode).toBe(401);
    const audit = await h.db.catalog.auditEvent.findMany({
      where: { targetId: apiToken.id },
      orderBy: { id: "asc" },
    });
    expect(audit.map((a) => a.action)).toEqual(["api-token.create", "api-token.revoke"]);
    expect(stringify(audit)).not.toContain(token);
  });

  it("expires, narrows the role, and refuses a wider role than its owner's", async () => {
    const admin = await h.createUser("ADMIN");
    const s = await h.login(admin.email);
    const make = (payload: object) =>
      h.app.inject({
        method: "POST",
        url: "/api/v1/api-tokens",
        headers: { cookie: s.cookie, "x-csrf-token": s.csrf },
        payload,
      });
    const narrow = (await make({ name: "helpdesk", role: "HELPDESK", ttlSeconds: 3600 })).json().token;
    const asNarrow = { authorization: `Bearer ${narrow}` };
    expect(
      (await h.app.inject({ method: "GET", url: "/api/v1/auth/me", headers: asNarrow })).json().role,
    ).toBe("HELPDESK");
    const users = await h.app.inject({ method: "GET", url: "/api/v1/users", headers: asNarrow });
    expect(users.statusCode).toBe(403);
    expect(users.json().error.code).toBe("BULWARK_AUTH_FORBIDDEN");
    h.advance(3601 * 1000);
    expect(
      (await h.app.inject({ method: "GET", url: "/api/v1/auth/me", headers: asNarrow })).statusCode,
    ).toBe(401);

    const helpdesk = await h.createUser("HELPDESK");
    const hs = await h.login(helpdesk.email);
    const wider = await h.app.inject({
      method: "POST",
      url: "/api/v1/api-tokens",
      headers: { cookie: hs.cookie, "x-csrf-token": hs.csrf },
      payload: { name: "escalate", role: "ADMIN" },
    });
    expect(wider.statusCode).toBe(403);
  });

  it("refuses malformed and unknown bearer tokens the same way", async () => {
    for (const value of ["Bearer nope", `Bearer bwk_aaaaaaaa_${"A".repeat(43)}`, "Basic abc", "Bearer "]) {
      const res = await h.app.inject({
        method: "GET",
        url: "/api/v1/auth/me",
        headers: { authorization: value },
      });
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe("BULWARK_AUTH_UNAUTHENTICATED");
    }
  });

  it("demoting or disabling the owner takes effect on the owner's tokens at once", async () => {
    const bearer = await h.bearer("OPERATOR");
    const me = await h.app.inject({
      method: "GET",
      url: "/api/v1/auth/me",
      headers: { authorization: bearer },
    });
    const userId = me.json().user.id;
    await h.db.catalog.user.update({ where: { id: userId }, data: { role: "AUDITOR" } });
    const again = await h.app.inject({
      method: "GET",
      url: "/api/v1/auth/me",
      headers: { authorization: bearer },
    });
    expect(again.json().role).toBe("AUDITOR");
    await h.db.catalog.user.update({ where: { id: userId }, data: { disabledAt: h.now() } });
    expect(
      (await h.app.inject({ method: "GET", url: "/api/v1/auth/me", headers: { authorization: bearer } }))
        .statusCode,
    ).toBe(401);
  });
});
