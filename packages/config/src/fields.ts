// Field types shared by server and agent configuration. Environment values arrive as strings,
// so numbers and booleans are coerced, strictly.
import { z } from "zod";

export const port = z.coerce
  .number({ message: "expected a port number" })
  .int({ message: "expected a whole port number" })
  .min(1, { message: "expected a port from 1 to 65535" })
  .max(65535, { message: "expected a port from 1 to 65535" });

export const boolean = z.union(
  [z.boolean(), z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1")],
  {
    message: "expected true or false",
  },
);

export const logLevel = z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
  message: "expected one of fatal, error, warn, info, debug, trace, silent",
});

export function url(protocols: string[]) {
  return z
    .string()
    .url({ message: `expected a URL (${protocols.join(", ")})` })
    .refine((v) => protocols.some((p) => v.startsWith(`${p}://`)), {
      message: `expected a URL starting with ${protocols.map((p) => `${p}://`).join(" or ")}`,
    });
}

export const hostname = z.string().min(1, { message: "expected a host name or address" });
export const path = z.string().min(1, { message: "expected a path" });
