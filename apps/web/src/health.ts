// Fetches the server's /healthz document (its contract is @bulwark/api) with a deadline, so the
// page never shows a spinner without saying why.
import { type Health, healthSchema } from "@bulwark/api";

/** Long enough for a loaded server, short enough that a person is told something soon. */
export const HEALTH_TIMEOUT_MS = 8_000;

export type HealthResult = { kind: "ok"; health: Health } | { kind: "error"; message: string };

export async function fetchHealth(): Promise<HealthResult> {
  try {
    // 503 still carries the document: it says which dependency is down.
    const res = await fetch("/healthz", { signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) });
    const parsed = healthSchema.safeParse(await res.json().catch(() => undefined));
    if (!parsed.success)
      return { kind: "error", message: `unexpected answer from the server (HTTP ${res.status})` };
    return { kind: "ok", health: parsed.data };
  } catch (err) {
    const timedOut = err instanceof DOMException && err.name === "TimeoutError";
    return {
      kind: "error",
      message: timedOut
        ? `the server did not answer within ${HEALTH_TIMEOUT_MS / 1000} s`
        : "the server cannot be reached",
    };
  }
}
