import { loadServerConfig } from "@bulwark/config";
import { isBulwarkError } from "@bulwark/errors";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiOptionsFromConfig } from "../src/http/config.js";
import { type ApiHarness, PASSWORD, startApiHarness } from "./support/api.js";

// The API's configuration keys, and plain-HTTP cookies for loopback development.

describe("API configuration", () => {
  it("defaults to Secure cookies and 30 min / 12 h sessions, from the environment otherwise", () => {
    expect(apiOptionsFromConfig(loadServerConfig({ environment: {} }))).toEqual({
      secureCookies: true,
      session: { idleSeconds: 1800, absoluteSeconds: 43200 },
      loginRateLimit: { keyPrefix: "bulwark-bulwark" },
    });
    const custom = loadServerConfig({
      environment: {
        BULWARK_HTTP_SECURE_COOKIES: "false",
        BULWARK_CONSOLE_SESSION_IDLE_SECONDS: "600",
        BULWARK_CONSOLE_SESSION_MAX_SECONDS: "3600",
        BULWARK_QUEUE_PREFIX: "site-b",
      },
    });
    expect(apiOptionsFromConfig(custom)).toEqual({
      secureCookies: false,
      session: { idleSeconds: 600, absoluteSeconds: 3600 },
      loginRateLimit: { keyPrefix: "site-b" },
    });
  });

  it("refuses insecure cookies on a non-loopback listener and out-of-range lifetimes", () => {
    const refused = (environment: Record<string, string>) => {
      try {
        loadServerConfig({ environment });
        return undefined;
      } catch (err) {
        return err;
      }
    };
    const exposed = refused({ BULWARK_HTTP_SECURE_COOKIES: "false", BULWARK_HTTP_HOST: "0.0.0.0" });
    expect(isBulwarkError(exposed, "BULWARK_CONFIG_INVALID")).toBe(true);
    expect((exposed as Error).message).toContain("httpSecureCookies");
    expect(
      isBulwarkError(refused({ BULWARK_CONSOLE_SESSION_IDLE_SECONDS: "5" }), "BULWARK_CONFIG_INVALID"),
    ).toBe(true);
  });
});

describe("plain-HTTP cookies (loopback development)", () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness("plainhttp", { secureCookies: false });
  });
  afterAll(async () => h?.close());

  it("names the cookies without __Host-, leaves Secure off, and still needs the CSRF header", async () => {
    const user = await h.createUser("OPERATOR");
    const res = await h.app.inject({
      method: "POST",
      url: "/api/v1/auth/login",
      payload: { email: user.email, password: PASSWORD },
    });
    expect(res.statusCode).toBe(200);
    const session = res.cookies.find((c) => c.name === "bulwark_session");
    expect(session).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/" });
    expect(session?.secure).toBeFalsy();
    expect(res.cookies.some((c) => c.name.startsWith("__Host-"))).toBe(false);
    const cookie = `bulwark_session=${session?.value}`;
    expect(
      (await h.app.inject({ method: "GET", url: "/api/v1/auth/me", headers: { cookie } })).statusCode,
    ).toBe(200);
    // A __Host- cookie is not what this server reads.
    const wrongName = `__Host-bulwark_session=${session?.value}`;
    expect(
      (await h.app.inject({ method: "GET", url: "/api/v1/auth/me", headers: { cookie: wrongName } }))
        .statusCode,
    ).toBe(401);
    const post = await h.app.inject({
      method: "POST",
      url: "/api/v1/groups",
      headers: { cookie },
      payload: { name: "x" },
    });
    expect(post.json().error.code).toBe("BULWARK_AUTH_CSRF");
  });
});
