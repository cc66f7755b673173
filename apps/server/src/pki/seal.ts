import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";

// AES-256-GCM envelope for the CA private key at rest in CertificateAuthority.encryptedPrivateKey:
// version (1 byte) | nonce (12) | ciphertext | tag (16). The associated data binds the envelope
// to its CA row, so a key blob copied onto another row does not open.

const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

function aad(caId: string): Buffer {
  return Buffer.from(`bulwark-ca-private-key:v${VERSION}:${caId}`);
}

export function sealCaKey(key: Buffer, caId: string, plaintext: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad(caId));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), nonce, body, cipher.getAuthTag()]);
}

export function openCaKey(key: Buffer, caId: string, sealed: Uint8Array): Buffer {
  const blob = Buffer.from(sealed);
  if (blob.length < 1 + NONCE_BYTES + TAG_BYTES || blob[0] !== VERSION) {
    throw new BulwarkError(
      "BULWARK_ENROLL_CA_KEY_INVALID",
      `the stored private key of CA ${caId} is not a version ${VERSION} envelope`,
      { details: { caId } },
    );
  }
  const nonce = blob.subarray(1, 1 + NONCE_BYTES);
  const tag = blob.subarray(blob.length - TAG_BYTES);
  const decipher = createDecipheriv("aes-256-gcm", key, nonce);
  decipher.setAAD(aad(caId));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([
      decipher.update(blob.subarray(1 + NONCE_BYTES, blob.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw new BulwarkError(
      "BULWARK_ENROLL_CA_KEY_INVALID",
      `the CA key file does not decrypt the private key of CA ${caId} (wrong or replaced key file?)`,
      { details: { caId } },
    );
  }
}
