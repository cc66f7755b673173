export * from "./audit.js";
export * from "./auth.js";
export * from "./backups.js";
export * from "./common.js";
export * from "./exports.js";
export * from "./files.js";
export * from "./fleet.js";
export { type Health, healthSchema, type Probe, probeSchema } from "./health.js";
export * from "./policies.js";
