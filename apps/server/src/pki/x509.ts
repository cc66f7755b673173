// @peculiar/x509 2.x resolves its algorithm providers through tsyringe, which needs the Reflect
// metadata polyfill loaded first. ESM evaluates imports in order, so importing the polyfill here,
// above the library, is enough; everything in the server imports x509 through this module.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** ECDSA P-256 with SHA-256: small keys, fast signatures, and what every TLS stack accepts. */
export const EC_ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export const subtle = webcrypto.subtle;

/** A fresh P-256 key pair; extractable because the CA's key is encrypted and stored, and leaf keys go to PEM. */
export function generateKeyPair(): Promise<CryptoKeyPair> {
  return subtle.generateKey(EC_ALGORITHM, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

/** A private key as PKCS#8 PEM (what grpc-js and openssl read). */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await subtle.exportKey("pkcs8", key));
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

/** 16 random bytes as a positive hex serial (RFC 5280: positive, at most 20 octets, unpredictable). */
export function randomSerial(random: (n: number) => Buffer): string {
  const bytes = random(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01; // positive and never a leading zero octet
  return bytes.toString("hex");
}
