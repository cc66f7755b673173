// Webhook endpoints for signed alerts (docs/alerts.md): admins create, change, delete and test
// them; admins and auditors read them and their deliveries. The signing secret is in the create
// answer only; it is stored sealed and never returned or audited.

import { randomUUID } from "node:crypto";
import {
  ALERT_EVENTS,
  type AlertEvent,
  createWebhookRequestSchema,
  createWebhookResponseSchema,
  idParamsSchema,
  pageQuerySchema,
  pageSchema,
  updateWebhookRequestSchema,
  type WebhookDelivery as WebhookDeliveryOut,
  type WebhookEndpoint as WebhookEndpointOut,
  webhookDeliveryListQuerySchema,
  webhookDeliverySchema,
  webhookEndpointSchema,
  webhookTestResponseSchema,
} from "@bulwark/api";
import type { Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { WebhookService } from "../../alerts/service.js";
import { audit, isUniqueViolation, notFound, tenantOf } from "../context.js";
import type { ApiDeps } from "../deps.js";
import { cursorDate, decodeCursor, pageOf } from "../pagination.js";
import { iso } from "../serialize.js";

interface EndpointRow {
  id: string;
  name: string;
  url: string;
  events: string[];
  enabled: boolean;
  createdAt: Date;
  updatedAt: Date;
}

interface DeliveryRow {
  id: string;
  endpointId: string;
  event: string;
  jobId: string | null;
  state: "PENDING" | "DELIVERED" | "FAILED";
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  createdAt: Date;
  lastAttemptAt: Date | null;
  nextAttemptAt: Date | null;
  deliveredAt: Date | null;
}

/** Never the secret: the row's other fields only. */
function endpointOut(e: EndpointRow): WebhookEndpointOut {
  return {
    id: e.id,
    name: e.name,
    url: e.url,
    events: e.events.filter((x): x is AlertEvent => (ALERT_EVENTS as readonly string[]).includes(x)),
    enabled: e.enabled,
    createdAt: iso(e.createdAt),
    updatedAt: iso(e.updatedAt),
  };
}

function deliveryOut(d: DeliveryRow): WebhookDeliveryOut {
  return {
    id: d.id,
    endpointId: d.endpointId,
    event: d.event,
    jobId: d.jobId,
    state: d.state,
    attempts: d.attempts,
    lastStatus: d.lastStatus,
    lastError: d.lastError,
    createdAt: iso(d.createdAt),
    lastAttemptAt: iso(d.lastAttemptAt),
    nextAttemptAt: iso(d.nextAttemptAt),
    deliveredAt: iso(d.deliveredAt),
  };
}

const ENDPOINT_FIELDS = {
  id: true,
  name: true,
  url: true,
  events: true,
  enabled: true,
  createdAt: true,
  updatedAt: true,
} as const;

function nameTaken(name: string): BulwarkError {
  return new BulwarkError("BULWARK_API_CONFLICT", `a webhook named ${name} already exists`, {
    details: { field: "name" },
  });
}

export function webhookRoutes(deps: ApiDeps, webhooks: WebhookService): FastifyPluginAsyncZod {
  const { catalog } = deps;
  const find = async (tenantId: string, id: string) => {
    const row = await catalog.webhookEndpoint.findFirst({ where: { id, tenantId }, select: ENDPOINT_FIELDS });
    if (!row) throw notFound("webhook", id);
    return row;
  };
  return async (app) => {
    app.get(
      "/webhooks",
      {
        schema: {
          tags: ["webhooks"],
          summary: "Webhook endpoints for alerts (never their secrets)",
          querystring: pageQuerySchema,
          response: { 200: pageSchema(webhookEndpointSchema) },
        },
      },
      async (request) => {
        const q = request.query;
        const where: Prisma.WebhookEndpointWhereInput = { tenantId: tenantOf(request) };
        if (q.cursor) {
          const [createdAt, id] = decodeCursor(q.cursor, 2);
          const at = cursorDate(createdAt as string);
          where.OR = [{ createdAt: { lt: at } }, { createdAt: at, id: { lt: String(id) } }];
        }
        const rows = await catalog.webhookEndpoint.findMany({
          where,
          select: ENDPOINT_FIELDS,
          orderBy: [{ createdAt: "desc" }, { id: "desc" }],
          take: q.limit + 1,
        });
        return pageOf(rows, q.limit, (e) => [e.createdAt.toISOString(), e.id], endpointOut);
      },
    );

    app.get(
      "/webhooks/:id",
      {
        schema: {
          tags: ["webhooks"],
          summary: "One webhook endpoint",
          params: idParamsSchema,
          response: { 200: webhookEndpointSchema },
        },
      },
      async (request) => endpointOut(await find(tenantOf(request), request.params.id)),
    );

    app.post(
      "/webhooks",
      {
        schema: {
          tags: ["webhooks"],
          summary: "Create a webhook endpoint; its signing secret is in this answer only",
          body: createWebhookRequestSchema,
          response: { 201: createWebhookResponseSchema },
        },
      },
      async (request, reply) => {
        const { name, url, events, enabled } = request.body;
        const id = randomUUID();
        const { secret, encryptedSecret } = webhooks.newSecret(id);
        const now = deps.now();
        let row: EndpointRow;
        try {
          row = await catalog.webhookEndpoint.create({
            data: {
              id,
              tenantId: tenantOf(request),
              name,
              url,
              events: [...new Set(events ?? ALERT_EVENTS)],
              enabled: enabled ?? true,
              encryptedSecret,
              createdById: request.principal?.user.id ?? null,
              createdAt: now,
              updatedAt: now,
            },
            select: ENDPOINT_FIELDS,
          });
        } catch (err) {
          if (isUniqueViolation(err)) throw nameTaken(name);
          throw err;
        }
        await audit(deps, request, {
          action: "webhook.create",
          targetType: "webhook",
          targetId: row.id,
          details: { name, url, events: row.events, enabled: row.enabled },
        });
        return reply.status(201).send({ webhook: endpointOut(row), secret });
      },
    );

    app.patch(
      "/webhooks/:id",
      {
        schema: {
          tags: ["webhooks"],
          summary: "Change a webhook endpoint's name, URL, events or enabled flag",
          params: idParamsSchema,
          body: updateWebhookRequestSchema,
          response: { 200: webhookEndpointSchema },
        },
      },
      async (request) => {
        const before = await find(tenantOf(request), request.params.id);
        const b = request.body;
        let row: EndpointRow;
        try {
          row = await catalog.webhookEndpoint.update({
            where: { id: before.id },
            data: {
              ...(b.name !== undefined ? { name: b.name } : {}),
              ...(b.url !== undefined ? { url: b.url } : {}),
              ...(b.events !== undefined ? { events: [...new Set(b.events)] } : {}),
              ...(b.enabled !== undefined ? { enabled: b.enabled } : {}),
              updatedAt: deps.now(),
            },
            select: ENDPOINT_FIELDS,
          });
        } catch (err) {
          if (isUniqueViolation(err)) throw nameTaken(String(b.name));
          throw err;
        }
        await audit(deps, request, {
          action: "webhook.update",
          targetType: "webhook",
          targetId: row.id,
          details: { changed: Object.keys(b), name: row.name, url: row.url },
        });
        return endpointOut(row);
      },
    );

    app.delete(
      "/webhooks/:id",
      {
        schema: {
          tags: ["webhooks"],
          summary: "Delete a webhook endpoint and its deliveries",
          params: idParamsSchema,
        },
      },
      async (request, reply) => {
        const row = await find(tenantOf(request), request.params.id);
        await catalog.webhookEndpoint.delete({ where: { id: row.id } });
        await audit(deps, request, {
          action: "webhook.delete",
          targetType: "webhook",
          targetId: row.id,
          details: { name: row.name, url: row.url },
        });
        return reply.status(204).send();
      },
    );

    app.post(
      "/webhooks/:id/test",
      {
        schema: {
          tags: ["webhooks"],
          summary: "Send a signed ping to the endpoint now (BULWARK_ALERT_DELIVERY_FAILED when refused)",
          params: idParamsSchema,
          response: { 200: webhookTestResponseSchema },
        },
      },
      async (request) => {
        const row = await find(tenantOf(request), request.params.id);
        let deliveryId: string;
        try {
          deliveryId = await webhooks.ping(row.id);
        } catch (err) {
          await audit(deps, request, {
            action: "webhook.test",
            targetType: "webhook",
            targetId: row.id,
            outcome: "FAILURE",
            details: { url: row.url, code: (err as { code?: string }).code ?? "BULWARK_GENERAL_INTERNAL" },
          });
          throw err;
        }
        await audit(deps, request, {
          action: "webhook.test",
          targetType: "webhook",
          targetId: row.id,
          details: { url: row.url, deliveryId },
        });
        const delivery = await catalog.webhookDelivery.findUniqueOrThrow({ where: { id: deliveryId } });
        return { delivery: deliveryOut(delivery) };
      },
    );

    app.get(
      "/webhooks/:id/deliveries",
      {
        schema: {
          tags: ["webhooks"],
          summary: "Deliveries to this endpoint, newest first",
          params: idParamsSchema,
          querystring: pageQuerySchema.extend(webhookDeliveryListQuerySchema.shape),
          response: { 200: pageSchema(webhookDeliverySchema) },
        },
      },
      async (request) => {
        const endpoint = await find(tenantOf(request), request.params.id);
        const q = request.query;
        const where: Prisma.WebhookDeliveryWhereInput = { endpointId: endpoint.id };
        if (q.state) where.state = q.state;
        if (q.cursor) {
          const [createdAt, id] = decodeCursor(q.cursor, 2);
          const at = cursorDate(createdAt as string);
          where.OR = [{ createdAt: { lt: at } }, { createdAt: at, id: { lt: String(id) } }];
        }
        const rows = await catalog.webhookDelivery.findMany({
          where,
          orderBy: [{ createdAt: "desc" }, { id: "desc" }],
          take: q.limit + 1,
        });
        return pageOf(rows, q.limit, (d) => [d.createdAt.toISOString(), d.id], deliveryOut);
      },
    );
  };
}
