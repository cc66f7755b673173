export { ApiClient, REQUEST_TIMEOUT_MS } from "./api-client.js";
export { type Io, run, USAGE } from "./run.js";
export { DEFAULT_SERVER_URL, defaultConfigPath, resolveSettings, type Settings } from "./settings.js";
