import type { Catalog } from "@bulwark/catalog";
import { NbdServer } from "@bulwark/nbd";
import type { Logger } from "pino";
import type { RepositoryRegistry } from "../repositories/registry.js";
import { ExportManager } from "./manager.js";

export interface NbdListener {
  exports: ExportManager;
  host: string;
  port: number;
  /** Ends every export (audited) and stops listening. */
  close(): Promise<void>;
}

/** The node's NBD listener (BULWARK_NBD_HOST / BULWARK_NBD_PORT) and the export manager on it. */
export async function startNbdListener(opts: {
  catalog: Catalog;
  repositories: RepositoryRegistry;
  host: string;
  port: number;
  log: Logger;
  now?: () => Date;
  /** This node's name, recorded on its exports' pins. */
  node?: string;
}): Promise<NbdListener> {
  const nbd = new NbdServer({
    host: opts.host,
    port: opts.port,
    log: opts.log,
    ...(opts.now ? { now: opts.now } : {}),
  });
  const { host, port } = await nbd.listen();
  const exports = new ExportManager({
    catalog: opts.catalog,
    repositories: opts.repositories,
    nbd,
    log: opts.log,
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.node ? { node: opts.node } : {}),
  });
  return {
    exports,
    host,
    port,
    async close() {
      await exports.close();
      await nbd.close();
    },
  };
}
