export { ApiClient, type Credentials, REQUEST_TIMEOUT_MS, ServerError } from "./api-client.js";
export type { CommandContext, CommandResult, CommandSpec, Io } from "./command.js";
export { COMMANDS } from "./commands/index.js";
export { EXIT, exitCodeFor } from "./exit-codes.js";
export { commandHelp, overviewHelp, parseCommandLine, synopsis } from "./parse-argv.js";
export { run, USAGE } from "./run.js";
export {
  type CliConfig,
  DEFAULT_SERVER_URL,
  defaultConfigPath,
  readCliConfig,
  resolveSettings,
  type Settings,
  writeCliConfig,
} from "./settings.js";
