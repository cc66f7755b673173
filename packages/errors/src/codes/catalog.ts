import { defineCodes } from "../define.js";

export const catalogCodes = defineCodes("CATALOG", {
  BULWARK_CATALOG_UNAVAILABLE: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary: "Postgres (the catalog) does not answer; retry once it is back.",
  },
  BULWARK_CATALOG_MIGRATION_FAILED: {
    http: 500,
    grpc: "FAILED_PRECONDITION",
    summary: "A catalog migration could not be applied; the database is left at the last applied migration.",
  },
  BULWARK_CATALOG_SCHEMA_DRIFT: {
    http: 500,
    grpc: "FAILED_PRECONDITION",
    summary: "The Prisma schema and the migrations disagree; create a migration for the schema change.",
  },
});
