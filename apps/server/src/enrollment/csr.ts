import { BulwarkError } from "@bulwark/errors";
import { x509 } from "../pki/x509.js";

// A PKCS#10 CSR from an agent, checked before anything is issued for it: bounded size, parses,
// self-signature verifies (the caller holds the private key), and the key is of a kind and size
// that every TLS stack accepts. The subject is ignored; the server sets CN = agent ID.

/** A P-256 CSR in PEM is about 500 bytes; 8 KiB leaves room for RSA-4096 and bounds parsing work. */
export const MAX_CSR_PEM_BYTES = 8 * 1024;
const ACCEPTED_CURVES = new Set(["P-256", "P-384"]);
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 4096;

function invalid(message: string): BulwarkError {
  return new BulwarkError("BULWARK_ENROLL_CSR_INVALID", message);
}

/** The CSR's public key, once the CSR has proven possession of the matching private key. */
export async function verifiedCsrPublicKey(pem: string): Promise<x509.PublicKey> {
  if (typeof pem !== "string" || pem.length === 0) throw invalid("csr_pem is empty");
  if (Buffer.byteLength(pem) > MAX_CSR_PEM_BYTES)
    throw invalid(`csr_pem is larger than ${MAX_CSR_PEM_BYTES} bytes`);
  if (
    !/^-----BEGIN CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE REQUEST-----\s*$/.test(
      pem,
    )
  ) {
    throw invalid("csr_pem is not one PEM CERTIFICATE REQUEST block");
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (err) {
    throw invalid(`csr_pem is not a PKCS#10 request: ${(err as Error).message}`);
  }
  const algorithm = csr.publicKey.algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  if (algorithm.name === "ECDSA") {
    if (!ACCEPTED_CURVES.has(algorithm.namedCurve ?? "")) {
      throw invalid(`EC curve ${algorithm.namedCurve ?? "(unknown)"} is not accepted; use P-256 or P-384`);
    }
  } else if (algorithm.name === "RSASSA-PKCS1-v1_5" || algorithm.name === "RSA-PSS") {
    const bits = algorithm.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
      throw invalid(`RSA key of ${bits} bits is not accepted; use ${MIN_RSA_BITS} to ${MAX_RSA_BITS}`);
    }
  } else {
    throw invalid(`key algorithm ${algorithm.name} is not accepted; use ECDSA P-256`);
  }
  let ok = false;
  try {
    ok = await csr.verify();
  } catch (err) {
    throw invalid(`the CSR signature cannot be checked: ${(err as Error).message}`);
  }
  if (!ok) throw invalid("the CSR signature does not verify: it was not signed by the key it carries");
  return csr.publicKey;
}
