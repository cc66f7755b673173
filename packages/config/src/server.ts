import { hostname as osHostname } from "node:os";
import { z } from "zod";
import { boolean, hostname, logLevel, path, port, url } from "./fields.js";
import { type EnvNames, loadConfig } from "./load.js";

export const serverConfigSchema = z.object({
  httpHost: hostname.default("127.0.0.1"),
  httpPort: port.default(8080),
  grpcHost: hostname.default("127.0.0.1"),
  grpcPort: port.default(8443),
  databaseUrl: url(["postgres", "postgresql"]).default("postgresql://postgres@127.0.0.1:5432/bulwark"),
  redisUrl: url(["redis", "rediss"]).default("redis://127.0.0.1:6379"),
  /** Server state: CA material, local repositories by default. */
  dataDir: path.default(".bulwark/server"),
  logLevel: logLevel.default("info"),
  /** Names this node among several sharing one Postgres and Redis; shown in /healthz and job logs. */
  nodeName: z.string().min(1).max(100).default(`${osHostname()}-${process.pid}`),
  /** Apply pending catalog migrations at start (takes Postgres' advisory lock; safe with several nodes). */
  migrateOnStart: boolean.default(true),
});

export type ServerConfig = z.output<typeof serverConfigSchema>;

export const serverEnv: EnvNames<z.input<typeof serverConfigSchema>> = {
  httpHost: "BULWARK_HTTP_HOST",
  httpPort: "BULWARK_HTTP_PORT",
  grpcHost: "BULWARK_GRPC_HOST",
  grpcPort: "BULWARK_GRPC_PORT",
  databaseUrl: "DATABASE_URL",
  redisUrl: "REDIS_URL",
  dataDir: "BULWARK_DATA_DIR",
  logLevel: "BULWARK_LOG_LEVEL",
  nodeName: "BULWARK_NODE_NAME",
  migrateOnStart: "BULWARK_MIGRATE_ON_START",
};

export function loadServerConfig(
  opts: { environment?: Record<string, string | undefined>; file?: string } = {},
): ServerConfig {
  return loadConfig({ schema: serverConfigSchema, env: serverEnv, ...opts });
}
