// Signing and verifying webhook requests (docs/alerts.md, "Signing"):
// Bulwark-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>.
// verifySignature is the receiver's side, kept here as the reference the tests and docs use.

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "bulwark-signature";
export const EVENT_HEADER = "bulwark-event";
export const DELIVERY_HEADER = "bulwark-delivery";
/** Receivers reject signatures older (or newer) than this. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

const SECRET_PREFIX = "whsec_";
export const WEBHOOK_SECRET_PATTERN = /^whsec_[A-Za-z0-9_-]{43}$/;

/** A new signing secret: whsec_ + 32 random bytes in base64url. */
export function newWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString("base64url");
}

function mac(secret: string, t: number, body: string | Buffer): string {
  return createHmac("sha256", Buffer.from(secret, "utf8")).update(`${t}.`).update(body).digest("hex");
}

/** The Bulwark-Signature value for `body` sent at `t` (seconds since the epoch). */
export function signatureHeader(secret: string, t: number, body: string | Buffer): string {
  return `t=${t},v1=${mac(secret, t, body)}`;
}

export type VerifyResult =
  | { ok: true; t: number }
  | { ok: false; reason: "malformed" | "mismatch" | "expired" };

/** Checks a Bulwark-Signature header against the raw body, the secret and the clock. */
export function verifySignature(opts: {
  header: string | undefined;
  body: string | Buffer;
  secret: string;
  nowSeconds: number;
  toleranceSeconds?: number;
}): VerifyResult {
  if (opts.header === undefined || opts.header.length > 2000) return { ok: false, reason: "malformed" };
  let t: number | undefined;
  const candidates: string[] = [];
  for (const part of opts.header.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === "t" && /^\d{1,12}$/.test(value)) t = Number(value);
    else if (key === "v1" && /^[0-9a-f]{64}$/.test(value)) candidates.push(value);
  }
  if (t === undefined || candidates.length === 0) return { ok: false, reason: "malformed" };
  const expected = Buffer.from(mac(opts.secret, t, opts.body), "hex");
  const matches = candidates.some((c) => timingSafeEqual(Buffer.from(c, "hex"), expected));
  if (!matches) return { ok: false, reason: "mismatch" };
  // Checked after the MAC so that an attacker learns nothing from the timing of a forged header.
  if (Math.abs(opts.nowSeconds - t) > (opts.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) {
    return { ok: false, reason: "expired" };
  }
  return { ok: true, t };
}
