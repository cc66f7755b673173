// GET /healthz: the server's version and whether the services it cannot work without answer.
// 200 when every check is up, 503 (with the same document) when one is down.
import { z } from "zod";

export const probeSchema = z.object({
  status: z.enum(["up", "down"]),
  latencyMs: z.number().nonnegative(),
  /** The driver's own words when down; never a connection string. */
  error: z.string().optional(),
});

export const healthSchema = z.object({
  status: z.enum(["ok", "degraded"]),
  version: z.string(),
  node: z.string(),
  uptimeSeconds: z.number().nonnegative(),
  checks: z.object({ postgres: probeSchema, redis: probeSchema }),
});

export type Probe = z.infer<typeof probeSchema>;
export type Health = z.infer<typeof healthSchema>;
