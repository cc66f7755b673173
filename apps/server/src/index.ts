export { type AppOptions, buildApp, REDACTED_LOG_PATHS } from "./app.js";
export { checkHealth, HEALTH_PROBE_TIMEOUT_MS } from "./health.js";
export { createRequestRedis } from "./redis.js";
export { serverVersion } from "./version.js";
