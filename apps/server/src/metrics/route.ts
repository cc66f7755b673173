// GET /api/v1/metrics: Prometheus text exposition of the caller's tenant (docs/server.md, "Monitoring").

import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { tenantOf } from "../http/context.js";
import type { ApiDeps } from "../http/deps.js";
import { collectMetrics } from "./collect.js";
import { PROMETHEUS_CONTENT_TYPE, renderExposition } from "./exposition.js";

export function metricsRoutes(deps: ApiDeps): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      "/metrics",
      {
        schema: {
          tags: ["metrics"],
          summary: "Prometheus metrics of the caller's tenant (text exposition format 0.0.4)",
          response: { 200: z.string() },
        },
      },
      async (request, reply) => {
        const families = await collectMetrics({
          catalog: deps.catalog,
          tenantId: tenantOf(request),
          now: deps.now(),
          queues: deps.queueDepths,
        });
        return reply.type(PROMETHEUS_CONTENT_TYPE).send(renderExposition(families));
      },
    );
  };
}
