import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "./generated/prisma/client.js";

export type Catalog = PrismaClient;

export interface CatalogClientOptions {
  databaseUrl: string;
  /** Pool size per process; the server's default leaves room for several nodes on one Postgres. */
  maxConnections?: number;
}

/** The catalog client: Prisma 7 over node-postgres (no Rust query engine). */
export function createCatalogClient(opts: CatalogClientOptions): Catalog {
  const adapter = new PrismaPg({ connectionString: opts.databaseUrl, max: opts.maxConnections ?? 10 });
  return new PrismaClient({ adapter });
}
