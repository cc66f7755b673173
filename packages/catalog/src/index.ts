export { type Catalog, type CatalogClientOptions, createCatalogClient } from "./client.js";
export { Prisma } from "./generated/prisma/client.js";
export * from "./generated/prisma/enums.js";
export {
  applyMigrations,
  assertNoDrift,
  createMigration,
  defaultMigrationsDir,
  defaultSchemaPath,
  diffMigrationsToSchema,
  type MigrationOptions,
  readMigrations,
} from "./migrations.js";
