import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, scrypt } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";
import { SCRYPT_DEFAULTS, SCRYPT_MAX } from "./constants.js";
import { decodePlainFile, encodePlainFile } from "./plain-file.js";

/**
 * Repository keys (spec, "Keys"): a 64-byte master key = ID key ‖ data key, wrapped per passphrase
 * or key file by a KEK. Pure functions; no I/O.
 */
export interface MasterKey {
  /** HMAC key for chunk IDs; agents hold this one only. */
  idKey: Buffer;
  /** Derived: HMAC key for index node IDs (domain separation from data chunks). */
  nodeIdKey: Buffer;
  /** Root of per-blob encryption subkeys; never leaves the server. */
  dataKey: Buffer;
}

/** What unlocks a repository: a passphrase or the contents of a key file. */
export type KeySecret = { passphrase: string } | { keyFile: Buffer };

export const KEY_FILE_MAGIC = "bulwark-repo-key";
export const KEY_FILE_VERSION = 1;
/** A key file must carry at least a 256-bit secret. */
export const MIN_KEY_FILE_BYTES = 32;

export function masterKeyFromBytes(bytes: Buffer): MasterKey {
  if (bytes.length !== 64) throw new Error("master key must be 64 bytes");
  const idKey = Buffer.from(bytes.subarray(0, 32));
  return {
    idKey,
    nodeIdKey: deriveNodeIdKey(idKey),
    dataKey: Buffer.from(bytes.subarray(32, 64)),
  };
}

/** The agent's view: an ID key alone (it can name chunks, not decrypt them). */
export function deriveNodeIdKey(idKey: Buffer): Buffer {
  return createHmac("sha256", idKey).update("bulwark index node id key v1").digest();
}

export function generateMasterKey(): { bytes: Buffer; key: MasterKey } {
  const bytes = randomBytes(64);
  return { bytes, key: masterKeyFromBytes(bytes) };
}

interface KeyFileBody {
  id: string;
  createdAt: string;
  kdf: "scrypt" | "hkdf-sha256";
  N?: number;
  r?: number;
  p?: number;
  salt: string;
  nonce: string;
  wrapped: string;
}

function aad(repositoryId: string): Buffer {
  return Buffer.from(`bulwark-key v1 ${repositoryId}`, "utf8");
}

/** Removes one trailing newline, as `echo pw > file` adds it. */
export function normalisePassphrase(raw: string): string {
  return raw.replace(/\r?\n$/, "");
}

async function deriveKek(secret: KeySecret, body: Pick<KeyFileBody, "kdf" | "N" | "r" | "p" | "salt">) {
  const salt = Buffer.from(body.salt, "base64");
  if ("passphrase" in secret) {
    if (body.kdf !== "scrypt") return null;
    const { N, r, p } = body as { N: number; r: number; p: number };
    return new Promise<Buffer>((resolve, reject) =>
      scrypt(
        Buffer.from(normalisePassphrase(secret.passphrase), "utf8"),
        salt,
        32,
        { N, r, p, maxmem: 256 * N * r + 1024 * 1024 },
        (err, key) => (err ? reject(err) : resolve(key)),
      ),
    );
  }
  if (body.kdf !== "hkdf-sha256") return null;
  if (secret.keyFile.length < MIN_KEY_FILE_BYTES) {
    throw new BulwarkError(
      "BULWARK_REPO_INVALID_ARGUMENT",
      `a key file must hold at least ${MIN_KEY_FILE_BYTES} bytes`,
    );
  }
  return Buffer.from(hkdfSync("sha256", secret.keyFile, salt, "bulwark kek v1", 32));
}

/** Wraps the master key for one passphrase or key file; returns the key file's bytes. */
export async function wrapMasterKey(
  masterBytes: Buffer,
  secret: KeySecret,
  repositoryId: string,
  opts: { id: string; now: Date; scrypt?: { N: number; r: number; p: number } },
): Promise<Buffer> {
  if ("keyFile" in secret && secret.keyFile.length < MIN_KEY_FILE_BYTES) {
    throw new BulwarkError(
      "BULWARK_REPO_INVALID_ARGUMENT",
      `a key file must hold at least ${MIN_KEY_FILE_BYTES} bytes`,
    );
  }
  const params = opts.scrypt ?? SCRYPT_DEFAULTS;
  const body: KeyFileBody = {
    id: opts.id,
    createdAt: opts.now.toISOString(),
    ...("passphrase" in secret ? { kdf: "scrypt" as const, ...params } : { kdf: "hkdf-sha256" as const }),
    salt: randomBytes(16).toString("base64"),
    nonce: randomBytes(12).toString("base64"),
    wrapped: "",
  };
  const kek = (await deriveKek(secret, body))!;
  const cipher = createCipheriv("aes-256-gcm", kek, Buffer.from(body.nonce, "base64"));
  cipher.setAAD(aad(repositoryId));
  body.wrapped = Buffer.concat([cipher.update(masterBytes), cipher.final(), cipher.getAuthTag()]).toString(
    "base64",
  );
  return encodePlainFile(KEY_FILE_MAGIC, KEY_FILE_VERSION, body);
}

function parseKeyFile(bytes: Buffer, what: string): KeyFileBody {
  const v = decodePlainFile(bytes, KEY_FILE_MAGIC, KEY_FILE_VERSION, what);
  const str = (k: string) => {
    if (typeof v[k] !== "string")
      throw new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: field ${k} missing`);
    return v[k] as string;
  };
  const kdf = str("kdf");
  if (kdf !== "scrypt" && kdf !== "hkdf-sha256") {
    throw new BulwarkError("BULWARK_REPO_UNSUPPORTED_VERSION", `${what}: unknown kdf ${kdf}`);
  }
  if (kdf === "scrypt") {
    for (const k of ["N", "r", "p"] as const) {
      const n = v[k];
      if (!Number.isSafeInteger(n) || (n as number) < 1 || (n as number) > SCRYPT_MAX[k]) {
        throw new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: scrypt parameter ${k} out of range`);
      }
    }
    if (((v.N as number) & ((v.N as number) - 1)) !== 0) {
      throw new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: scrypt N is not a power of two`);
    }
  }
  return {
    id: str("id"),
    createdAt: str("createdAt"),
    kdf,
    N: v.N as number,
    r: v.r as number,
    p: v.p as number,
    salt: str("salt"),
    nonce: str("nonce"),
    wrapped: str("wrapped"),
  };
}

/** Tries one key file; null when the secret does not open it (wrong passphrase or other kind). */
export async function unwrapMasterKey(
  keyFileBytes: Buffer,
  secret: KeySecret,
  repositoryId: string,
  what: string,
): Promise<{ bytes: Buffer; key: MasterKey } | null> {
  const body = parseKeyFile(keyFileBytes, what);
  const kek = await deriveKek(secret, body);
  if (!kek) return null;
  const wrapped = Buffer.from(body.wrapped, "base64");
  if (wrapped.length !== 64 + 16) throw new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: wrapped key size`);
  const decipher = createDecipheriv("aes-256-gcm", kek, Buffer.from(body.nonce, "base64"));
  decipher.setAAD(aad(repositoryId));
  decipher.setAuthTag(wrapped.subarray(64));
  try {
    const bytes = Buffer.concat([decipher.update(wrapped.subarray(0, 64)), decipher.final()]);
    return { bytes, key: masterKeyFromBytes(bytes) };
  } catch {
    return null;
  }
}
