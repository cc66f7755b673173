export { type Health, healthSchema, type Probe, probeSchema } from "./health.js";
