import { hostname as osHostname } from "node:os";
import { z } from "zod";
import { boolean, hostname, logLevel, path, port, url } from "./fields.js";
import { type EnvNames, loadConfig } from "./load.js";

/** A backup session with no call for this long expires (docs/protocol.md §5, DEFAULT_SESSION_IDLE_TIMEOUT_S). */
const DEFAULT_SESSION_IDLE_TIMEOUT_S = 3600;
/** How often a node looks for expired sessions: a minute is far below the idle timeout, and cheap. */
const DEFAULT_SESSION_SWEEP_INTERVAL_S = 60;

/** Keys that configure the agent listener's TLS; all or none (none = gRPC ingest off). */
export const GRPC_TLS_KEYS = ["grpcTlsCertFile", "grpcTlsKeyFile", "agentCaFile"] as const;

/** host:port, with an IPv6 host in brackets. */
const hostPort = z
  .string()
  .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { message: "expected host:port" });

/** A list of DNS names or IP addresses: an array in a config file, comma-separated in the environment. */
const nameList = z.preprocess(
  (v) =>
    typeof v === "string"
      ? v
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
      : v,
  z.array(z.string().regex(/^[A-Za-z0-9.:*-]+$/, { message: "expected a DNS name or IP address" })),
);

const seconds = (min: number, max: number) =>
  z.coerce
    .number({ message: "expected a number of seconds" })
    .int({ message: "expected a whole number of seconds" })
    .min(min, { message: `expected at least ${min} seconds` })
    .max(max, { message: `expected at most ${max} seconds` });

const count = (min: number, max: number) =>
  z.coerce
    .number({ message: "expected a number" })
    .int({ message: "expected a whole number" })
    .min(min, { message: `expected at least ${min}` })
    .max(max, { message: `expected at most ${max}` });

/** Five cron fields; the job system checks the expression itself when it starts. */
const cron = z
  .string()
  .trim()
  .refine((v) => v.split(/\s+/).length === 5, {
    message: "expected five cron fields: minute hour day month weekday",
  });

const timeZone = z.string().refine(
  (tz) => {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  },
  { message: "expected an IANA timezone, e.g. Europe/Berlin" },
);

const QUEUE_PREFIX_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

export const serverConfigSchema = z
  .object({
    httpHost: hostname.default("127.0.0.1"),
    httpPort: port.default(8080),
    grpcHost: hostname.default("127.0.0.1"),
    grpcPort: port.default(8443),
    /** NBD listener for instant access (docs/nbd.md): plain NBD has no authentication, keep it on loopback. */
    nbdHost: hostname.default("127.0.0.1"),
    /** 10809 is NBD's IANA port. */
    nbdPort: port.default(10809),
    databaseUrl: url(["postgres", "postgresql"]).default("postgresql://postgres@127.0.0.1:5432/bulwark"),
    redisUrl: url(["redis", "rediss"]).default("redis://127.0.0.1:6379"),
    /** Server state: CA material, local repositories by default. */
    dataDir: path.default(".bulwark/server"),
    logLevel: logLevel.default("info"),
    /** Names this node among several sharing one Postgres and Redis; shown in /healthz and job logs. */
    nodeName: z.string().min(1).max(100).default(`${osHostname()}-${process.pid}`),
    /** Apply pending catalog migrations at start (takes Postgres' advisory lock; safe with several nodes). */
    migrateOnStart: boolean.default(true),
    /** The built web console to serve at /; defaults to apps/web/dist of this installation. */
    consoleDir: path.optional(),
    /** The address people open the console at (http/https); links in webhook alerts point there. */
    publicUrl: url(["http", "https"]).optional(),
    /**
     * Agent listener (gRPC, mutual TLS) until enrollment issues certificates from the catalog CA:
     * the server's certificate chain (PEM), its private key (PEM), and the CA (PEM) that signs
     * agent certificates. Unset = no gRPC listener.
     */
    grpcTlsCertFile: path.optional(),
    grpcTlsKeyFile: path.optional(),
    agentCaFile: path.optional(),
    /**
     * Enrollment and the server CA (docs/security.md). The key file that encrypts the CA's private
     * key in the catalog; default <dataDir>/ca.key, created (mode 0600) when absent.
     */
    caKeyFile: path.optional(),
    /** The enroll listener (TLS without client certificates, EnrollmentService only); host defaults to grpcHost. */
    enrollHost: hostname.optional(),
    enrollPort: port.default(8444),
    /** host:port agents use to reach the agent / enroll listener (token files); default the listener's host:port. */
    advertisedAgentAddress: hostPort.optional(),
    advertisedEnrollAddress: hostPort.optional(),
    /** More names (DNS or IP) for the server certificate the catalog CA issues, comma-separated in the environment. */
    grpcTlsSans: nameList.default([]),
    /** Opens the repositories named in the catalog: a file holding the passphrase, or a key file. */
    repositoryPassphraseFile: path.optional(),
    repositoryKeyFile: path.optional(),
    /** A backup session with no call for this long expires; its chunks stay for reuse. */
    sessionIdleTimeoutSeconds: seconds(60, 7 * 24 * 3600).default(DEFAULT_SESSION_IDLE_TIMEOUT_S),
    /** How often this node marks expired sessions and aborts their repository ingest. */
    sessionSweepIntervalSeconds: seconds(1, 3600).default(DEFAULT_SESSION_SWEEP_INTERVAL_S),
    /**
     * BullMQ keys live under bull:<queuePrefix>. Default: `bulwark-<catalog database name>`, because
     * jobs belong to one catalog: two installations (or test runs) sharing a Redis must never pick
     * up each other's jobs, while every node of one installation shares its catalog and so agrees.
     */
    queuePrefix: z
      .string()
      .regex(QUEUE_PREFIX_PATTERN, { message: "expected 1-64 letters, digits, _ . : -" })
      .optional(),
    /** Jobs of each queue this node runs at once (backups and restores mostly wait on agents). */
    jobWorkerConcurrency: count(1, 64).default(4),
    /** Backups and restores running at once against one repository, over all nodes. */
    repositoryJobConcurrency: count(1, 64).default(2),
    /** When every repository is garbage-collected and verified (five-field cron, maintenanceTimezone). */
    gcCron: cron.default("0 3 * * *"),
    verifyCron: cron.default("0 5 * * 0"),
    maintenanceTimezone: timeZone.default("UTC"),
    /**
     * Console cookies are Secure with the __Host- prefix (docs/api.md). false only for plain HTTP on
     * a loopback httpHost (development); browsers drop Secure cookies on other http:// origins.
     */
    httpSecureCookies: boolean.default(true),
    /** A console session ends after this long without a request … */
    consoleSessionIdleSeconds: seconds(60, 24 * 3600).default(30 * 60),
    /** … and this long after login in any case. */
    consoleSessionMaxSeconds: seconds(300, 30 * 24 * 3600).default(12 * 3600),
  })
  .superRefine((cfg, ctx) => {
    const set = GRPC_TLS_KEYS.filter((k) => cfg[k] !== undefined);
    if (set.length > 0 && set.length < GRPC_TLS_KEYS.length) {
      for (const key of GRPC_TLS_KEYS.filter((k) => cfg[k] === undefined)) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: `required with ${set.join(", ")}: the agent listener needs a certificate, its key and the agent CA`,
        });
      }
    }
    if (!cfg.httpSecureCookies && !["127.0.0.1", "::1", "localhost"].includes(cfg.httpHost)) {
      ctx.addIssue({
        code: "custom",
        path: ["httpSecureCookies"],
        message: "may only be false when httpHost is a loopback address (127.0.0.1, ::1, localhost)",
      });
    }
    if (cfg.repositoryPassphraseFile !== undefined && cfg.repositoryKeyFile !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["repositoryKeyFile"],
        message: "set either repositoryPassphraseFile or repositoryKeyFile, not both",
      });
    }
  });

/** `bulwark-<database name>`, reduced to the characters a queue prefix allows. */
export function defaultQueuePrefix(databaseUrl: string): string {
  const name = decodeURIComponent(new URL(databaseUrl).pathname.replace(/^\//, "")) || "postgres";
  return `bulwark-${name}`.replace(/[^A-Za-z0-9_.:-]/g, "_").slice(0, 64);
}

/** The validated configuration, with defaults that depend on other keys filled in. */
export type ServerConfig = Omit<z.output<typeof serverConfigSchema>, "queuePrefix"> & { queuePrefix: string };

export const serverEnv: EnvNames<z.input<typeof serverConfigSchema>> = {
  httpHost: "BULWARK_HTTP_HOST",
  httpPort: "BULWARK_HTTP_PORT",
  grpcHost: "BULWARK_GRPC_HOST",
  grpcPort: "BULWARK_GRPC_PORT",
  nbdHost: "BULWARK_NBD_HOST",
  nbdPort: "BULWARK_NBD_PORT",
  databaseUrl: "DATABASE_URL",
  redisUrl: "REDIS_URL",
  dataDir: "BULWARK_DATA_DIR",
  logLevel: "BULWARK_LOG_LEVEL",
  nodeName: "BULWARK_NODE_NAME",
  migrateOnStart: "BULWARK_MIGRATE_ON_START",
  consoleDir: "BULWARK_CONSOLE_DIR",
  publicUrl: "BULWARK_PUBLIC_URL",
  grpcTlsCertFile: "BULWARK_GRPC_TLS_CERT_FILE",
  grpcTlsKeyFile: "BULWARK_GRPC_TLS_KEY_FILE",
  agentCaFile: "BULWARK_AGENT_CA_FILE",
  caKeyFile: "BULWARK_CA_KEY_FILE",
  enrollHost: "BULWARK_ENROLL_HOST",
  enrollPort: "BULWARK_ENROLL_PORT",
  advertisedAgentAddress: "BULWARK_ADVERTISED_AGENT_ADDRESS",
  advertisedEnrollAddress: "BULWARK_ADVERTISED_ENROLL_ADDRESS",
  grpcTlsSans: "BULWARK_GRPC_TLS_SANS",
  repositoryPassphraseFile: "BULWARK_REPOSITORY_PASSPHRASE_FILE",
  repositoryKeyFile: "BULWARK_REPOSITORY_KEY_FILE",
  sessionIdleTimeoutSeconds: "BULWARK_SESSION_IDLE_TIMEOUT_SECONDS",
  sessionSweepIntervalSeconds: "BULWARK_SESSION_SWEEP_INTERVAL_SECONDS",
  queuePrefix: "BULWARK_QUEUE_PREFIX",
  jobWorkerConcurrency: "BULWARK_JOB_WORKER_CONCURRENCY",
  repositoryJobConcurrency: "BULWARK_REPOSITORY_JOB_CONCURRENCY",
  gcCron: "BULWARK_GC_CRON",
  verifyCron: "BULWARK_VERIFY_CRON",
  maintenanceTimezone: "BULWARK_MAINTENANCE_TIMEZONE",
  httpSecureCookies: "BULWARK_HTTP_SECURE_COOKIES",
  consoleSessionIdleSeconds: "BULWARK_CONSOLE_SESSION_IDLE_SECONDS",
  consoleSessionMaxSeconds: "BULWARK_CONSOLE_SESSION_MAX_SECONDS",
};

export function loadServerConfig(
  opts: { environment?: Record<string, string | undefined>; file?: string } = {},
): ServerConfig {
  const cfg = loadConfig({ schema: serverConfigSchema, env: serverEnv, ...opts });
  return { ...cfg, queuePrefix: cfg.queuePrefix ?? defaultQueuePrefix(cfg.databaseUrl) };
}
