import type { Catalog } from "@bulwark/catalog";
import {
  BackupServiceServerDefinition,
  bindServer,
  ControlServiceService,
  IdentityServiceService,
  RestoreServiceFastResponses,
  SERVER_OPTIONS,
} from "@bulwark/protocol";
import { Server, type ServerCredentials } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { ControlPlane } from "../control/control-plane.js";
import type { EnrollmentContext } from "../enrollment/context.js";
import { startExpirySweeper } from "../ingest/expiry.js";
import { RepositoryIngests } from "../ingest/repository-ingests.js";
import type { IngestContext } from "../ingest/sessions.js";
import type { RepositoryRegistry } from "../repositories/registry.js";
import { restoreService } from "../restore/service.js";
import { backupService } from "./backup-service.js";
import { identityService } from "./enrollment-service.js";
import type { AgentIdentityResolver } from "./identity.js";

// The agent listener: one grpc-js server with mutual TLS hosting the BackupService (the control
// and restore services join it later). Assembled from its dependencies so tests can build,
// stop and rebuild it on the same database and repository, as a restart would.

/** In-flight calls get this long to finish on close before they are cut (agents resume). */
const SHUTDOWN_GRACE_MS = 5_000;

export interface AgentListenerOptions {
  catalog: Catalog;
  repositories: RepositoryRegistry;
  identity: AgentIdentityResolver;
  credentials: ServerCredentials;
  host: string;
  /** 0 = any free port (tests). */
  port: number;
  idleTimeoutSeconds: number;
  sweepIntervalSeconds: number;
  log: Logger;
  now?: () => Date;
  /** The node's control plane (ControlService); absent = no control stream on this listener. */
  control?: ControlPlane;
  /** The server CA and what renewals need (IdentityService.Renew); absent = no renewal on this listener. */
  enrollment?: EnrollmentContext;
}

export interface AgentListener {
  port: number;
  /** For tests and operations: the shared state of the ingest calls. */
  context: IngestContext;
  close(): Promise<void>;
}

export async function startAgentListener(opts: AgentListenerOptions): Promise<AgentListener> {
  const context: IngestContext = {
    catalog: opts.catalog,
    repositories: opts.repositories,
    ingests: new RepositoryIngests(),
    idleTimeoutSeconds: opts.idleTimeoutSeconds,
    now: opts.now ?? (() => new Date()),
    log: opts.log,
  };
  const server = new Server(SERVER_OPTIONS);
  server.addService(BackupServiceServerDefinition, backupService(context, opts.identity));
  if (opts.control) server.addService(ControlServiceService, opts.control.service());
  server.addService(RestoreServiceFastResponses, restoreService(context, opts.identity));
  if (opts.enrollment)
    server.addService(IdentityServiceService, identityService(opts.enrollment, opts.identity));
  const port = await bindServer(server, `${opts.host}:${opts.port}`, opts.credentials);
  const sweeper = startExpirySweeper(context, opts.sweepIntervalSeconds * 1000);
  return {
    port,
    context,
    async close() {
      await sweeper.stop();
      // Control streams never end by themselves: end them (SERVER_SHUTDOWN) before the grace wait.
      await opts.control?.close();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await context.ingests.closeAll();
    },
  };
}
