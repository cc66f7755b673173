// The REST API under /api/v1: zod validation and serialization, cookies, the RBAC hook, the
// OpenAPI document (generated from the same zod schemas) at /docs and /docs/json, and every
// resource's routes.

import fastifyCookie from "@fastify/cookie";
import fastifySwagger from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance } from "fastify";
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { API_PREFIX } from "../auth/permissions.js";
import { DEFAULT_LOGIN_RATE_LIMIT, type LoginRateLimitOptions } from "../auth/rate-limit.js";
import { DEFAULT_SESSION_LIFETIME, type SessionLifetime } from "../auth/sessions.js";
import { metricsRoutes } from "../metrics/route.js";
import { serverVersion } from "../version.js";
import type { ApiDeps } from "./deps.js";
import { type ApiRoute, CSRF_HEADER, registerRbac } from "./rbac.js";
import { agentRoutes } from "./routes/agents.js";
import { apiTokenRoutes } from "./routes/api-tokens.js";
import { auditRoutes } from "./routes/audit.js";
import { authRoutes } from "./routes/auth.js";
import { backupRoutes } from "./routes/backups.js";
import { enrollmentTokenRoutes } from "./routes/enrollment-tokens.js";
import { exportRoutes } from "./routes/exports.js";
import { fileRoutes } from "./routes/files.js";
import { groupRoutes } from "./routes/groups.js";
import { DEFAULT_JOB_EVENTS, type JobEventsOptions, jobRoutes } from "./routes/jobs.js";
import { policyRoutes } from "./routes/policies.js";
import { repositoryRoutes } from "./routes/repositories.js";
import { userRoutes } from "./routes/users.js";
import { webhookRoutes } from "./routes/webhooks.js";

/** What buildApp's caller may set for the API; everything has a production default. */
export interface ApiOptions {
  /** Default true. False only for plain HTTP on loopback (development): cookies lose Secure and __Host-. */
  secureCookies?: boolean;
  session?: Partial<SessionLifetime>;
  loginRateLimit?: Partial<LoginRateLimitOptions>;
  jobEvents?: Partial<JobEventsOptions>;
  enrollmentTokens?: ApiDeps["enrollmentTokens"];
  agentRevocation?: ApiDeps["agentRevocation"];
  policySchedules?: ApiDeps["policySchedules"];
  jobs?: ApiDeps["jobs"];
  exports?: ApiDeps["exports"];
  files?: ApiDeps["files"];
  queueDepths?: ApiDeps["queueDepths"];
  webhooks?: ApiDeps["webhooks"];
}

export function registerApi(
  app: FastifyInstance,
  base: Pick<ApiDeps, "catalog" | "redis" | "now">,
  opts: ApiOptions = {},
): ApiRoute[] {
  const deps: ApiDeps = {
    ...base,
    auth: {
      secureCookies: opts.secureCookies ?? true,
      session: { ...DEFAULT_SESSION_LIFETIME, ...opts.session },
      loginRateLimit: { ...DEFAULT_LOGIN_RATE_LIMIT, ...opts.loginRateLimit },
    },
    enrollmentTokens: opts.enrollmentTokens,
    agentRevocation: opts.agentRevocation,
    policySchedules: opts.policySchedules,
    jobs: opts.jobs,
    exports: opts.exports,
    files: opts.files,
    queueDepths: opts.queueDepths,
    webhooks: opts.webhooks,
  };
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.register(fastifyCookie);
  app.register(fastifySwagger, {
    openapi: {
      info: {
        title: "Bulwark REST API",
        version: serverVersion,
        description:
          "Authenticate with the session cookie from POST /api/v1/auth/login (state-changing requests also send " +
          `the ${CSRF_HEADER} header) or with an API token (Authorization: Bearer bwk_…). See docs/api.md.`,
      },
      components: {
        securitySchemes: {
          session: { type: "apiKey", in: "cookie", name: "__Host-bulwark_session" },
          apiToken: { type: "http", scheme: "bearer" },
        },
      },
      security: [{ session: [] }, { apiToken: [] }],
    },
    transform: jsonSchemaTransform,
  });
  app.register(fastifySwaggerUi, { routePrefix: "/docs" });

  const routes = registerRbac(app, deps);
  const jobEvents = { ...DEFAULT_JOB_EVENTS, ...opts.jobEvents };
  app.register(
    async (api) => {
      await api.register(authRoutes(deps));
      await api.register(userRoutes(deps));
      await api.register(apiTokenRoutes(deps));
      if (deps.enrollmentTokens) await api.register(enrollmentTokenRoutes(deps, deps.enrollmentTokens));
      await api.register(agentRoutes(deps));
      await api.register(groupRoutes(deps));
      await api.register(policyRoutes(deps));
      await api.register(backupRoutes(deps));
      await api.register(jobRoutes(deps, jobEvents));
      await api.register(repositoryRoutes(deps));
      if (deps.exports) await api.register(exportRoutes(deps, deps.exports));
      if (deps.files) await api.register(fileRoutes(deps, deps.files));
      await api.register(auditRoutes(deps));
      await api.register(metricsRoutes(deps));
      if (deps.webhooks) await api.register(webhookRoutes(deps, deps.webhooks));
    },
    { prefix: API_PREFIX },
  );
  return routes;
}
