export { type AgentConfig, agentConfigSchema, agentEnv, loadAgentConfig } from "./agent.js";
export * as fields from "./fields.js";
export { type EnvNames, type LoadOptions, loadConfig, readJsonConfigFile } from "./load.js";
export {
  defaultQueuePrefix,
  loadServerConfig,
  type ServerConfig,
  serverConfigSchema,
  serverEnv,
} from "./server.js";
