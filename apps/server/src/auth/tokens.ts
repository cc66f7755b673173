// Bearer secrets: session cookies, CSRF tokens and API tokens. Only SHA-256 digests are stored;
// the secrets have 256 bits of entropy, so a fast hash is enough (no salt or stretching needed).

import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

const SECRET_BYTES = 32;
/** `bwk_<prefix>_<secret>`: the prefix (shown in listings) tells tokens apart without revealing them. */
export const API_TOKEN_PATTERN = /^bwk_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$/;
const PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

export function sha256Hex(value: string): string {
  return createHash("sha256").update(value, "utf8").digest("hex");
}

export function newSecret(): string {
  return randomBytes(SECRET_BYTES).toString("base64url");
}

/** Compares two hex digests without leaking where they differ. */
export function digestsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, "hex");
  const y = Buffer.from(b, "hex");
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

export interface NewApiToken {
  token: string;
  prefix: string;
  tokenHash: string;
}

export function newApiToken(): NewApiToken {
  const bytes = randomBytes(8);
  const prefix = Array.from(bytes, (b) => PREFIX_ALPHABET[b % PREFIX_ALPHABET.length]).join("");
  const token = `bwk_${prefix}_${newSecret()}`;
  return { token, prefix: `bwk_${prefix}`, tokenHash: sha256Hex(token) };
}
