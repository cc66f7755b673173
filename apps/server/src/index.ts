export { type AppOptions, buildApp, REDACTED_LOG_PATHS } from "./app.js";
export {
  type AgentIdentity,
  type AgentIdentityResolver,
  CatalogIdentityResolver,
  certificateFingerprint,
} from "./grpc/identity.js";
export { type AgentListener, type AgentListenerOptions, startAgentListener } from "./grpc/server.js";
export { type AgentListenerTls, agentListenerCredentials, loadAgentListenerTls } from "./grpc/tls.js";
export { checkHealth, HEALTH_PROBE_TIMEOUT_MS } from "./health.js";
export { sweepExpiredSessions } from "./ingest/expiry.js";
export { createRequestRedis } from "./redis.js";
export { PostgresChunkIndex } from "./repositories/chunk-index.js";
export { initRepository, type OpenRepository, RepositoryRegistry } from "./repositories/registry.js";
export { loadRepositorySecret } from "./repositories/secret.js";
export { serverVersion } from "./version.js";
