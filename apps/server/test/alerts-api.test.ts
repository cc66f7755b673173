import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CatalogWebhookService,
  verifySignature,
  WEBHOOK_SECRET_PATTERN,
  WebhookSecretSeal,
} from "../src/alerts/index.js";
import { type ApiHarness, startApiHarness } from "./support/api.js";
import { WebhookReceiver } from "./support/webhook-receiver.js";

// Webhook endpoints over the real REST API (real Postgres, real Redis): the secret is shown once
// and stored sealed, URLs are validated, only admins change endpoints, and the test ping reaches a
// real HTTP receiver that checks the signature the way docs/alerts.md tells receivers to.

const caKey = randomBytes(32);
const seal = new WebhookSecretSeal(caKey);
const receiver = new WebhookReceiver();
let h: ApiHarness;
let admin: string;

beforeAll(async () => {
  await receiver.start();
  h = await startApiHarness("alerts_api", {}, async (db) => ({
    // Signing uses the real clock: the receiver checks the timestamp against its own.
    webhooks: new CatalogWebhookService({
      catalog: db.catalog,
      seal,
      timeoutMs: 5_000,
      userAgent: "bulwark-server/test",
      now: () => new Date(),
    }),
  }));
  admin = await h.bearer("ADMIN");
});

afterAll(async () => {
  await receiver.stop();
  await h?.close();
});

function call(method: "GET" | "POST" | "PATCH" | "DELETE", url: string, auth: string, payload?: object) {
  return h.app.inject({
    method,
    url: `/api/v1${url}`,
    headers: { authorization: auth },
    ...(payload ? { payload } : {}),
  });
}

async function create(name: string, path: string, extra: object = {}) {
  const res = await call("POST", "/webhooks", admin, { name, url: receiver.url(path), ...extra });
  expect(res.statusCode, res.body).toBe(201);
  const { webhook, secret } = res.json() as { webhook: { id: string }; secret: string };
  receiver.secrets.set(path, secret);
  return { id: webhook.id, secret, body: res.json() };
}

describe("webhook endpoints", () => {
  it("shows the secret once, stores it sealed, and never lists, returns or audits it", async () => {
    const { id, secret, body } = await create("chat", "/chat");
    expect(secret).toMatch(WEBHOOK_SECRET_PATTERN);
    expect(body.webhook).toMatchObject({
      name: "chat",
      enabled: true,
      events: ["backup.failed", "backup.missed", "restore.failed", "verify.failed"],
    });
    const list = await call("GET", "/webhooks", admin);
    const one = await call("GET", `/webhooks/${id}`, admin);
    expect(list.json().items.map((w: { id: string }) => w.id)).toContain(id);
    for (const res of [list, one]) expect(res.body).not.toContain(secret);
    const row = await h.db.catalog.webhookEndpoint.findUniqueOrThrow({ where: { id } });
    expect(Buffer.from(row.encryptedSecret).includes(Buffer.from(secret))).toBe(false);
    expect(seal.open(id, row.encryptedSecret)).toBe(secret);
    // Bound to its row: the same blob does not open as another endpoint's secret.
    expect(() => seal.open(h.tenantId, row.encryptedSecret)).toThrow(/BULWARK_ALERT_SECRET_INVALID|decrypt/);
    // A key file that is not the server's does not open it either.
    expect(() => new WebhookSecretSeal(randomBytes(32)).open(id, row.encryptedSecret)).toThrow();
    const audit = await h.db.catalog.auditEvent.findMany({
      where: { action: "webhook.create", targetId: id },
    });
    expect(audit).toHaveLength(1);
    expect(JSON.stringify(audit[0]!.details)).not.toContain(secret);
  });

  it("accepts only http(s) URLs without credentials, known events and a free name", async () => {
    for (const url of [
      "ftp://127.0.0.1/x",
      "javascript:alert(1)",
      "http://user:pw@127.0.0.1/x",
      "not a url",
      `http://127.0.0.1/${"a".repeat(2001)}`,
    ]) {
      const res = await call("POST", "/webhooks", admin, {
        name: `bad-${randomBytes(3).toString("hex")}`,
        url,
      });
      expect(res.statusCode, url).toBe(400);
      expect(res.json().error.code).toBe("BULWARK_GENERAL_VALIDATION");
    }
    const badEvent = await call("POST", "/webhooks", admin, {
      name: "bad-event",
      url: receiver.url("/x"),
      events: ["backup.succeeded"],
    });
    expect(badEvent.statusCode).toBe(400);
    await create("taken", "/taken");
    const again = await call("POST", "/webhooks", admin, { name: "taken", url: receiver.url("/taken2") });
    expect(again.statusCode).toBe(409);
    expect(again.json().error.code).toBe("BULWARK_API_CONFLICT");
  });

  it("sends a signed ping that the receiver verifies; a wrong secret, a changed body or an old time fail the check", async () => {
    const { id, secret } = await create("pager", "/pager", { events: ["backup.missed"] });
    const res = await call("POST", `/webhooks/${id}/test`, admin);
    expect(res.statusCode, res.body).toBe(200);
    const delivery = res.json().delivery;
    expect(delivery).toMatchObject({ event: "ping", state: "DELIVERED", attempts: 1, lastStatus: 200 });
    const got = receiver.received.filter((r) => r.path === "/pager");
    expect(got).toHaveLength(1);
    const req = got[0]!;
    expect(req.verdict.ok).toBe(true);
    expect(req.event).toBe("ping");
    expect(req.deliveryId).toBe(delivery.id);
    const payload = JSON.parse(req.body);
    expect(payload).toMatchObject({ version: 1, id: delivery.id, event: "ping", job: null });
    expect(req.body).not.toContain(secret);

    const now = Math.floor(Date.now() / 1000);
    const check = (over: Partial<Parameters<typeof verifySignature>[0]>) =>
      verifySignature({ header: req.signature, body: req.body, secret, nowSeconds: now, ...over });
    expect(check({}).ok).toBe(true);
    expect(check({ secret: `whsec_${randomBytes(32).toString("base64url")}` })).toEqual({
      ok: false,
      reason: "mismatch",
    });
    expect(check({ body: req.body.replace('"ping"', '"pong"') })).toEqual({ ok: false, reason: "mismatch" });
    expect(check({ nowSeconds: now + 301 })).toEqual({ ok: false, reason: "expired" });
    expect(check({ header: "v1=00" })).toEqual({ ok: false, reason: "malformed" });
  });

  it("reports a refused ping as BULWARK_ALERT_DELIVERY_FAILED and lists it as a FAILED delivery", async () => {
    const { id } = await create("down", "/down");
    receiver.status = 503;
    try {
      const res = await call("POST", `/webhooks/${id}/test`, admin);
      expect(res.statusCode).toBe(502);
      expect(res.json().error).toMatchObject({
        code: "BULWARK_ALERT_DELIVERY_FAILED",
        details: { status: 503 },
      });
    } finally {
      receiver.status = undefined;
    }
    const deliveries = await call("GET", `/webhooks/${id}/deliveries`, admin);
    expect(deliveries.json().items).toEqual([
      expect.objectContaining({ event: "ping", state: "FAILED", lastStatus: 503, attempts: 1 }),
    ]);
    const failed = await call("GET", `/webhooks/${id}/deliveries?state=DELIVERED`, admin);
    expect(failed.json().items).toEqual([]);
  });

  it("lets only admins change and test endpoints; auditors read them", async () => {
    const { id } = await create("rbac", "/rbac");
    const operator = await h.bearer("OPERATOR");
    const helpdesk = await h.bearer("HELPDESK");
    const auditor = await h.bearer("AUDITOR");
    for (const who of [operator, helpdesk, auditor]) {
      for (const [method, url, payload] of [
        ["POST", "/webhooks", { name: "x", url: receiver.url("/x") }],
        ["PATCH", `/webhooks/${id}`, { enabled: false }],
        ["DELETE", `/webhooks/${id}`, undefined],
        ["POST", `/webhooks/${id}/test`, undefined],
      ] as const) {
        const res = await call(method, url, who, payload);
        expect(res.statusCode, `${method} ${url}`).toBe(403);
      }
    }
    for (const who of [operator, helpdesk])
      expect((await call("GET", "/webhooks", who)).statusCode).toBe(403);
    expect((await call("GET", `/webhooks/${id}`, auditor)).statusCode).toBe(200);
    expect((await call("GET", `/webhooks/${id}/deliveries`, auditor)).statusCode).toBe(200);

    const patched = await call("PATCH", `/webhooks/${id}`, admin, {
      enabled: false,
      events: ["backup.failed"],
    });
    expect(patched.json()).toMatchObject({ enabled: false, events: ["backup.failed"] });
    expect((await call("DELETE", `/webhooks/${id}`, admin)).statusCode).toBe(204);
    expect((await call("GET", `/webhooks/${id}`, admin)).statusCode).toBe(404);
    const actions = (
      await h.db.catalog.auditEvent.findMany({ where: { targetId: id }, orderBy: { id: "asc" } })
    ).map((a) => a.action);
    expect(actions).toEqual(["webhook.create", "webhook.update", "webhook.delete"]);
  });
});
