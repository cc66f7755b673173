// @peculiar/x509 2.x needs the Reflect metadata polyfill loaded before it (tsyringe); ESM evaluates
// imports in order, so every use in the agent goes through this module.
import "reflect-metadata";
import { createHash, webcrypto, X509Certificate } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

/** ECDSA P-256 with SHA-256, the key type the server's CA accepts first. */
export const EC_ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** A fresh key pair and a CSR for it; the private key never leaves this process except into key.pem. */
export async function newKeyAndCsr(
  commonName: string,
): Promise<{ keyPem: string; csrPem: string; spki: Buffer }> {
  const keys = (await webcrypto.subtle.generateKey(EC_ALGORITHM, true, [
    "sign",
    "verify",
  ])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [commonName] }],
    keys,
    signingAlgorithm: EC_ALGORITHM,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  const spki = Buffer.from(await webcrypto.subtle.exportKey("spki", keys.publicKey));
  return { keyPem: x509.PemConverter.encode(pkcs8, "PRIVATE KEY"), csrPem: csr.toString("pem"), spki };
}

/** SHA-256 of a certificate's DER, lowercase hex (the pin in a token file). */
export function certificateSha256(pem: string): string {
  return createHash("sha256").update(new X509Certificate(pem).raw).digest("hex");
}
