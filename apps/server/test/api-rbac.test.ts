import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Role } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.js";
import { isAllowed, PERMISSIONS, PUBLIC, permissionFor } from "../src/auth/permissions.js";
import type { ApiOptions } from "../src/http/index.js";
import { type ApiHarness, startApiHarness } from "./support/api.js";

// Walks every route registered under /api/v1 (from the app itself, so a new route is covered
// without touching this file) for every role, and checks the answer against auth/permissions.ts.

const ROLES: Role[] = ["ADMIN", "OPERATOR", "HELPDESK", "AUDITOR"];

/**
 * Services of other parts of the server, present so that their routes are registered and walked.
 * No request in this file may reach them: a forbidden role is stopped by the RBAC hook, an allowed
 * one by validation of the empty body or by the unknown IDs in the URL. Reaching one fails the test.
 */
function unreachable(): never {
  throw new Error("the RBAC walk reached a service: a route let a request through that it should not have");
}
function noSuchBackup(id: string): never {
  throw new BulwarkError("BULWARK_API_NOT_FOUND", `no backup ${id}`);
}
const SERVICES: ApiOptions = {
  enrollmentTokens: { mint: async () => unreachable(), revoke: async () => unreachable() },
  agentRevocation: { revoke: async () => unreachable() },
  policySchedules: { syncPolicy: async () => unreachable() },
  // Listing needs no ID, so an allowed role does reach it: an empty node (api-exports.test.ts uses the real one).
  exports: { open: async () => unreachable(), close: async () => unreachable(), list: () => [] },
  // The walk's random IDs name no backup: answered as the real RestorePointFiles answers them.
  files: { lease: async (_tenant, id) => noSuchBackup(id) },
  webhooks: { newSecret: () => unreachable(), ping: async () => unreachable() },
  jobs: {
    backupNow: async () => unreachable(),
    restore: async () => unreachable(),
    cancel: async () => unreachable(),
    retry: async () => unreachable(),
  },
};

let h: ApiHarness;
const bearers = new Map<Role, string>();
beforeAll(async () => {
  h = await startApiHarness("rbac", SERVICES);
  for (const role of ROLES) bearers.set(role, await h.bearer(role));
});
afterAll(async () => h?.close());

function concrete(url: string): string {
  return url.replace(/:(\w+)/g, () => randomUUID());
}

describe("RBAC on every /api/v1 route", () => {
  it("registers exactly the routes of the permissions table (with every service wired)", () => {
    const registered = h.app.apiRoutes.map((r) => `${r.method} ${r.url.replace("/api/v1", "")}`).sort();
    expect(registered).toEqual(Object.keys(PERMISSIONS).sort());
  });

  it("answers 401 without credentials, except the public login", async () => {
    for (const route of h.app.apiRoutes) {
      const res = await h.app.inject({ method: route.method as "GET", url: concrete(route.url) });
      if (permissionFor(route.method, route.url) === PUBLIC) {
        expect([400, 401], `${route.method} ${route.url}`).toContain(res.statusCode);
        expect(res.json().error.code, `${route.method} ${route.url}`).not.toBe(
          "BULWARK_AUTH_UNAUTHENTICATED",
        );
      } else {
        expect(res.statusCode, `${route.method} ${route.url}`).toBe(401);
        expect(res.json().error.code).toBe("BULWARK_AUTH_UNAUTHENTICATED");
      }
    }
  });

  for (const role of ROLES) {
    it(`lets ${role} through exactly where the table allows it`, async () => {
      const allowed: string[] = [];
      for (const route of h.app.apiRoutes) {
        const label = `${role} ${route.method} ${route.url}`;
        const permission = permissionFor(route.method, route.url);
        expect(permission, label).toBeDefined();
        const res = await h.app.inject({
          method: route.method as "GET",
          url: concrete(route.url),
          headers: { authorization: bearers.get(role) as string },
        });
        if (permission !== undefined && isAllowed(permission, role)) {
          expect([401, 403, 500], label).not.toContain(res.statusCode);
          allowed.push(`${route.method} ${route.url}`);
        } else {
          expect(res.statusCode, label).toBe(403);
          expect(res.json().error.code, label).toBe("BULWARK_AUTH_FORBIDDEN");
        }
      }
      expect(allowed.length).toBeGreaterThan(0);
    });
  }

  it("keeps helpdesk and auditor away from every delete and every policy change", () => {
    for (const [key, permission] of Object.entries(PERMISSIONS)) {
      const [method, path] = key.split(" ") as [string, string];
      const ownCredentials = path.startsWith("/auth/") || path.startsWith("/api-tokens");
      if (ownCredentials || permission === PUBLIC) continue;
      const changesPolicy = /^\/(policies|assignments)/.test(path) && method !== "GET";
      if (method === "DELETE" || changesPolicy) {
        expect(permission, key).not.toContain("HELPDESK");
        expect(permission, key).not.toContain("AUDITOR");
      }
      if (method !== "GET") expect(permission, key).not.toContain("AUDITOR");
    }
  });

  it("refuses to start with an /api/v1 route that has no entry in the table", async () => {
    const direct = buildApp({ catalog: h.db.catalog, redis: h.redis, nodeName: "unlisted" });
    expect(() => direct.get("/api/v1/unlisted", async () => ({ leaked: true }))).toThrow(
      /no entry in auth\/permissions\.ts/,
    );
    await direct.close().catch(() => undefined);
    // Registered from a plugin (as the real routes are), the error stops the start-up instead.
    const viaPlugin = buildApp({ catalog: h.db.catalog, redis: h.redis, nodeName: "unlisted" });
    viaPlugin.register(
      async (api) => {
        api.post("/groups/:id/secret", async () => ({ leaked: true }));
      },
      { prefix: "/api/v1" },
    );
    await expect(viaPlugin.ready()).rejects.toThrow(/POST \/api\/v1\/groups\/:id\/secret has no entry/);
    await viaPlugin.close().catch(() => undefined);
  });
});

describe("docs and OpenAPI", () => {
  it("docs/api.md's roles table matches the permissions table", () => {
    const doc = readFileSync(new URL("../../../docs/api.md", import.meta.url), "utf8");
    const rows = new Map<string, string[]>();
    for (const line of doc.split("\n")) {
      const m = /^\| `(GET|POST|PUT|PATCH|DELETE) \/api\/v1(\S+)` \|(.*)\|\s*$/.exec(line);
      if (!m) continue;
      rows.set(
        `${m[1]} ${m[2]}`,
        (m[3] as string).split("|").map((c) => c.trim()),
      );
    }
    expect([...rows.keys()].sort()).toEqual(Object.keys(PERMISSIONS).sort());
    for (const [key, permission] of Object.entries(PERMISSIONS)) {
      const expected = ROLES.map((r) =>
        permission === PUBLIC ? "public" : permission.includes(r) ? "yes" : "—",
      );
      expect(rows.get(key), key).toEqual(expected);
    }
  });

  it("serves an OpenAPI document at /docs/json that lists every /api/v1 route, and the UI at /docs", async () => {
    const res = await h.app.inject({ method: "GET", url: "/docs/json" });
    expect(res.statusCode).toBe(200);
    const doc = res.json();
    expect(doc.openapi).toMatch(/^3\./);
    const documented = new Set<string>();
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(ops)) documented.add(`${method.toUpperCase()} ${path}`);
    }
    for (const route of h.app.apiRoutes) {
      expect(documented, `${route.method} ${route.url}`).toContain(
        `${route.method} ${route.url.replace(/:(\w+)/g, "{$1}")}`,
      );
    }
    // The request schemas come from the zod contracts.
    const login = doc.paths["/api/v1/auth/login"].post;
    expect(login.requestBody.content["application/json"].schema.required).toEqual(["email", "password"]);
    const ui = await h.app.inject({ method: "GET", url: "/docs/" });
    expect(ui.statusCode).toBe(200);
    expect(ui.body).toContain("swagger");
  });
});
