// One HTTP attempt of a delivery: POST the stored body, signed now, with a timeout and without
// following redirects (docs/alerts.md). Returns what happened; never throws for the receiver's faults.

import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signatureHeader } from "./signing.js";

export interface AttemptResult {
  ok: boolean;
  /** The receiver's HTTP status, null when there was no answer. */
  status: number | null;
  /** Why it failed, short and without secrets; null on success. */
  error: string | null;
}

export async function sendWebhook(opts: {
  url: string;
  secret: string;
  event: string;
  deliveryId: string;
  body: string;
  timeoutMs: number;
  userAgent: string;
  now: () => Date;
}): Promise<AttemptResult> {
  const t = Math.floor(opts.now().getTime() / 1000);
  try {
    const res = await fetch(opts.url, {
      method: "POST",
      redirect: "manual",
      signal: AbortSignal.timeout(opts.timeoutMs),
      headers: {
        "content-type": "application/json",
        "user-agent": opts.userAgent,
        [EVENT_HEADER]: opts.event,
        [DELIVERY_HEADER]: opts.deliveryId,
        [SIGNATURE_HEADER]: signatureHeader(opts.secret, t, opts.body),
      },
      body: opts.body,
    });
    // The answer's body is not needed; drain it so the connection is released.
    await res.arrayBuffer().catch(() => undefined);
    if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status, error: null };
    const why = res.status >= 300 && res.status < 400 ? "redirects are not followed" : "not a 2xx answer";
    return { ok: false, status: res.status, error: `HTTP ${res.status}: ${why}` };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const reason =
      e.name === "TimeoutError" || e.name === "AbortError"
        ? `no answer within ${opts.timeoutMs} ms`
        : (e.cause?.code ?? e.cause?.message ?? e.message);
    return { ok: false, status: null, error: String(reason).slice(0, 500) };
  }
}
