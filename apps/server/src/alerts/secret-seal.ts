// Webhook signing secrets at rest (docs/security.md, "Secrets at rest"). The server must read a
// secret back to sign each request, so it cannot be hashed like tokens; it is sealed with
// AES-256-GCM under a key derived (HKDF-SHA256) from the CA key file, which lives on the server
// nodes' disks and never in the database. Envelope: version (1) | nonce (12) | ciphertext | tag (16);
// the associated data binds it to its endpoint row, so a blob copied onto another row does not open.

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";

const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const INFO = "bulwark-webhook-secret-key:v1";

export class WebhookSecretSeal {
  private readonly key: Buffer;

  /** `caKey`: the 32 bytes of the CA key file (loadOrCreateCaKey); a separate key is derived from it. */
  constructor(caKey: Buffer) {
    if (caKey.length !== 32) throw new Error("the CA key must be 32 bytes");
    this.key = Buffer.from(hkdfSync("sha256", caKey, Buffer.alloc(0), INFO, 32));
  }

  private static aad(endpointId: string): Buffer {
    return Buffer.from(`bulwark-webhook-secret:v${VERSION}:${endpointId}`);
  }

  seal(endpointId: string, secret: string): Uint8Array<ArrayBuffer> {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.key, nonce);
    cipher.setAAD(WebhookSecretSeal.aad(endpointId));
    const body = Buffer.concat([cipher.update(secret, "utf8"), cipher.final()]);
    return new Uint8Array(Buffer.concat([Buffer.from([VERSION]), nonce, body, cipher.getAuthTag()]));
  }

  open(endpointId: string, sealed: Uint8Array): string {
    const blob = Buffer.from(sealed);
    const invalid = () =>
      new BulwarkError(
        "BULWARK_ALERT_SECRET_INVALID",
        `the signing secret of webhook endpoint ${endpointId} does not decrypt with this server's CA key file`,
        { details: { endpointId } },
      );
    if (blob.length < 1 + NONCE_BYTES + TAG_BYTES || blob[0] !== VERSION) throw invalid();
    const decipher = createDecipheriv("aes-256-gcm", this.key, blob.subarray(1, 1 + NONCE_BYTES));
    decipher.setAAD(WebhookSecretSeal.aad(endpointId));
    decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
    try {
      return Buffer.concat([
        decipher.update(blob.subarray(1 + NONCE_BYTES, blob.length - TAG_BYTES)),
        decipher.final(),
      ]).toString("utf8");
    } catch {
      throw invalid();
    }
  }
}
