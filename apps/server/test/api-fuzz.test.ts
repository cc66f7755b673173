import { randomBytes } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CatalogWebhookService, WebhookSecretSeal } from "../src/alerts/index.js";
import type { ApiOptions } from "../src/http/index.js";
import { type ApiHarness, startApiHarness } from "./support/api.js";

// Issue 5: fuzzed REST inputs never return a 500. Every route registered under /api/v1 (taken from
// the app itself, so a new route is fuzzed without touching this file) gets fast-check generated
// hostile path params, query strings and bodies as an ADMIN, the role that passes RBAC everywhere,
// so the inputs reach validation and the handlers. Each answer must be below 500, and a 4xx must
// carry a BULWARK_* code in the standard error body.

/** Runs per route: enough variety per route while the whole file stays well under a minute or two. */
const RUNS_PER_ROUTE = 20;
/** Fixed, so a failure reproduces; override with FUZZ_SEED to explore other inputs. */
const SEED = Number(process.env.FUZZ_SEED ?? 20260305);

/**
 * Services of other parts of the server, wired so their routes are registered and fuzzed. An input
 * that gets past a route's own validation reaches them; they answer as for an unknown ID (a 404
 * BulwarkError), so a 500 can only come from the route or the shared error handling under test.
 */
function noSuch(what: string): never {
  throw new BulwarkError("BULWARK_API_NOT_FOUND", `no such ${what}`);
}
const SERVICES: ApiOptions = {
  enrollmentTokens: { mint: async () => noSuch("tenant"), revoke: async () => noSuch("token") },
  agentRevocation: { revoke: async () => noSuch("agent") },
  policySchedules: { syncPolicy: async () => noSuch("policy") },
  exports: { open: async () => noSuch("backup"), close: async () => noSuch("export"), list: () => [] },
  files: { lease: async (_tenant, id) => noSuch(`backup ${id}`) },
  jobs: {
    backupNow: async () => noSuch("agent"),
    restore: async () => noSuch("backup"),
    cancel: async () => noSuch("job"),
    retry: async () => noSuch("job"),
  },
};

const HUGE = 100_000;

/** Strings meant to break parsers, lookups and path handling. */
const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom(
    "",
    " ",
    "..",
    "../",
    "../../etc/passwd",
    "%00",
    "\u0000",
    "null",
    "undefined",
    "NaN",
    "-1",
    "0",
    "1e309",
    "true",
    "[]",
    "{}",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "00000000-0000-0000-0000-00000000000g",
    "'; DROP TABLE users; --",
    "\uD800",
    "é\u0301🦀\u202E",
    `bwk_${"a".repeat(60)}`,
  ),
  fc.nat({ max: 4 }).map((n) => "x".repeat(10 ** n)),
  fc.constant("Ω".repeat(HUGE / 4)),
);

/** Numbers at and beyond every edge a schema may check. */
const hostileNumber: fc.Arbitrary<number> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(-1, 0, 2 ** 31, 2 ** 53, -(2 ** 63), Number.MAX_VALUE, 1e308, -0, 0.5),
);

/** A value of any JSON type, including shapes no schema expects. */
const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  hostileString,
  hostileNumber,
  fc.constantFrom(null, true, false, [], {}),
  fc.nat({ max: 3 }).map((n) => nested(10 ** n)),
);

/**
 * A path segment as sent: mostly a hostile string percent-encoded, sometimes a raw one that is not
 * valid percent-encoding or that walks out of its segment.
 */
const urlSegment: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: hostileString.map(encodeSegment) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "%",
      "%zz",
      "%E0%A4%A",
      "%C0%AF",
      "..",
      "../..",
      "..%2f..%2f",
      "%00",
      "a;b",
      "%2e%2e",
    ),
  },
);

/** Percent-encodes as a client would; a lone surrogate (which encodeURIComponent refuses) becomes U+FFFD, as UTF-8 encoding makes it. */
function encodeSegment(s: string): string {
  return encodeURIComponent(Buffer.from(s, "utf8").toString("utf8"));
}

function nested(depth: number): unknown {
  let v: unknown = "deep";
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { a: v };
  return v;
}

interface RouteShape {
  method: string;
  url: string;
  params: string[];
  query: string[];
  body: string[];
}

type Body =
  | { kind: "none" }
  | { kind: "json"; value: unknown }
  | { kind: "raw"; text: string; contentType: string };

interface FuzzRequest {
  params: string[];
  query: [string, string][];
  body: Body;
}

/** Field names of each route's querystring and body, from the OpenAPI document the zod contracts produce. */
async function routeShapes(h: ApiHarness): Promise<RouteShape[]> {
  const res = await h.app.inject({ method: "GET", url: "/docs/json" });
  const doc = res.json() as {
    paths: Record<string, Record<string, OpenApiOperation>>;
  };
  return h.app.apiRoutes.map((route) => {
    const op = doc.paths[route.url.replace(/:(\w+)/g, "{$1}")]?.[route.method.toLowerCase()];
    const schema = op?.requestBody?.content?.["application/json"]?.schema;
    return {
      method: route.method,
      url: route.url,
      params: [...route.url.matchAll(/:(\w+)/g)].map((m) => m[1] as string),
      query: (op?.parameters ?? []).filter((p) => p.in === "query").map((p) => p.name),
      body: Object.keys(schema?.properties ?? {}),
    };
  });
}

interface OpenApiOperation {
  parameters?: { in: string; name: string }[];
  requestBody?: { content?: Record<string, { schema?: { properties?: Record<string, unknown> } }> };
}

function fuzzRequest(shape: RouteShape): fc.Arbitrary<FuzzRequest> {
  const knownKeys = [...shape.query, "limit", "cursor", "unknownKey"];
  const queryPair = fc.tuple(
    fc.oneof(fc.constantFrom(...knownKeys), fc.string({ maxLength: 20 })),
    fc.oneof(
      hostileString,
      hostileNumber.map(String),
      fc.constantFrom("1e400", "-5", "0x10", "1.5", "Infinity", "[object Object]"),
    ),
  );
  // A repeated key is how a query string carries an array.
  const query = fc
    .array(queryPair, { maxLength: 6 })
    .chain((pairs) => fc.subarray(pairs).map((repeated) => [...pairs, ...repeated]));
  const wrongFields = fc.record(Object.fromEntries([...shape.body, "unknownKey"].map((k) => [k, anyJson])), {
    requiredKeys: [],
  });
  const body: fc.Arbitrary<Body> = fc.oneof(
    fc.constant<Body>({ kind: "none" }),
    anyJson.map<Body>((value) => ({ kind: "json", value })),
    wrongFields.map<Body>((value) => ({ kind: "json", value })),
    fc
      .oneof(
        fc.string({ maxLength: 200 }),
        fc.constantFrom("{", '{"a":', "[1,2", "nul", "'single'", "\u0000", "{}{}", "__proto__"),
        fc.constant(`{"__proto__":{"role":"ADMIN"},"constructor":{"prototype":{}}}`),
      )
      .map<Body>((text) => ({ kind: "raw", text, contentType: "application/json" })),
    fc
      .constantFrom("text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1")
      .map<Body>((contentType) => ({ kind: "raw", text: "a=b", contentType })),
  );
  return fc.record({
    params: fc.array(urlSegment, { minLength: shape.params.length, maxLength: shape.params.length }),
    query,
    body,
  });
}

function urlOf(shape: RouteShape, req: FuzzRequest): string {
  let i = 0;
  const path = shape.url.replace(/:(\w+)/g, () => req.params[i++] ?? "");
  const qs = new URLSearchParams(req.query).toString();
  return qs === "" ? path : `${path}?${qs}`;
}

let h: ApiHarness;
let admin: string;
let shapes: RouteShape[];
beforeAll(async () => {
  // Webhooks are the real service on the test catalog (sealed secrets; a test ping of an endpoint
  // the fuzzer managed to create would really be sent, with a short timeout).
  h = await startApiHarness("fuzz", SERVICES, async (db, now) => ({
    webhooks: new CatalogWebhookService({
      catalog: db.catalog,
      seal: new WebhookSecretSeal(randomBytes(32)),
      timeoutMs: 1_000,
      userAgent: "bulwark-server/fuzz",
      now,
    }),
  }));
  admin = await h.bearer("ADMIN");
  shapes = await routeShapes(h);
});
afterAll(async () => h?.close());

describe("fuzzed REST inputs never yield a 500", () => {
  it("finds the routes and their fields", () => {
    expect(shapes.length).toBeGreaterThan(40);
    const create = shapes.find((s) => s.method === "POST" && s.url === "/api/v1/groups");
    expect(create?.body).toContain("name");
    const list = shapes.find((s) => s.method === "GET" && s.url === "/api/v1/groups");
    expect(list?.query).toContain("limit");
    // Every route family is wired, the webhook routes included.
    const webhookRoutes = shapes
      .filter((s) => s.url.startsWith("/api/v1/webhooks"))
      .map((s) => `${s.method} ${s.url}`);
    expect(webhookRoutes.sort()).toEqual([
      "DELETE /api/v1/webhooks/:id",
      "GET /api/v1/webhooks",
      "GET /api/v1/webhooks/:id",
      "GET /api/v1/webhooks/:id/deliveries",
      "PATCH /api/v1/webhooks/:id",
      "POST /api/v1/webhooks",
      "POST /api/v1/webhooks/:id/test",
    ]);
    expect(shapes.find((s) => s.method === "POST" && s.url === "/api/v1/webhooks")?.body).toContain("url");
  });

  it("answers the URLs Fastify's router rejects itself with a BULWARK_* body (found by this fuzzing)", async () => {
    const cases = [
      { url: `/api/v1/groups/${"a".repeat(500)}`, status: 414 },
      { url: "/api/v1/groups/%zz", status: 400 },
    ];
    for (const { url, status } of cases) {
      const res = await h.app.inject({ method: "GET", url, headers: { authorization: admin } });
      expect(res.statusCode, url).toBe(status);
      expect(res.json().error.code, url).toBe("BULWARK_GENERAL_VALIDATION");
    }
  });

  // Every route × RUNS_PER_ROUTE requests: over a minute at load 30 on the shared machine.
  it("answers every hostile input on every route with < 500 and a BULWARK_* code for a 4xx", async () => {
    for (const shape of shapes) {
      const label = `${shape.method} ${shape.url}`;
      try {
        await fc.assert(
          fc.asyncProperty(fuzzRequest(shape), async (req) => {
            const headers: Record<string, string> = { authorization: admin };
            let payload: string | undefined;
            if (req.body.kind === "json") {
              payload = JSON.stringify(req.body.value) ?? "null";
              headers["content-type"] = "application/json";
            } else if (req.body.kind === "raw") {
              payload = req.body.text;
              headers["content-type"] = req.body.contentType;
            }
            const res = await h.app.inject({
              method: shape.method as "GET",
              url: urlOf(shape, req),
              headers,
              payload,
            });
            const where = `${res.statusCode} ${res.body.slice(0, 300)} <- ${urlOf(shape, req).slice(0, 300)}`;
            expect(res.statusCode, where).toBeLessThan(500);
            if (res.statusCode >= 400) {
              const code: unknown = res.json().error?.code;
              expect(typeof code === "string" && /^BULWARK_[A-Z0-9_]+$/.test(code), where).toBe(true);
            }
          }),
          { numRuns: RUNS_PER_ROUTE, seed: SEED },
        );
      } catch (err) {
        // The counterexample may hold 100 kB strings: report the failed check and a bounded excerpt.
        const cause = (err as Error).cause as Error | undefined;
        throw new Error(
          `${label} (seed ${SEED}): ${cause?.message.slice(0, 800) ?? ""}\n${(err as Error).message.slice(0, 1500)}`,
        );
      }
    }
  }, 300_000);
});
