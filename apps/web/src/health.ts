// The server's /healthz document (see apps/server) and how to fetch it with a deadline, so the
// page never shows a spinner without saying why.

export interface Probe {
  status: "up" | "down";
  latencyMs: number;
  error?: string;
}

export interface Health {
  status: "ok" | "degraded";
  version: string;
  node: string;
  uptimeSeconds: number;
  checks: Record<string, Probe>;
}

/** Long enough for a loaded server, short enough that a person is told something soon. */
export const HEALTH_TIMEOUT_MS = 8_000;

export type HealthResult = { kind: "ok"; health: Health } | { kind: "error"; message: string };

export async function fetchHealth(): Promise<HealthResult> {
  try {
    // 503 still carries the document: it says which dependency is down.
    const res = await fetch("/healthz", { signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) });
    const body = (await res.json()) as Health;
    if (typeof body?.status !== "string" || typeof body.checks !== "object") {
      return { kind: "error", message: `unexpected answer from the server (HTTP ${res.status})` };
    }
    return { kind: "ok", health: body };
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
