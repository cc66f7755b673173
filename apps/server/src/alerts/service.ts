// What the REST API needs for webhook endpoints (routes/webhooks.ts): a new sealed secret, and a
// signed test ping sent at once and recorded as a delivery (docs/alerts.md).

import { randomUUID } from "node:crypto";
import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import { buildAlertBody } from "./payload.js";
import type { WebhookSecretSeal } from "./secret-seal.js";
import { sendWebhook } from "./send.js";
import { newWebhookSecret } from "./signing.js";

export interface WebhookService {
  /** A fresh secret for endpoint `endpointId` and its sealed form for the catalog. */
  newSecret(endpointId: string): { secret: string; encryptedSecret: Uint8Array<ArrayBuffer> };
  /**
   * Sends a signed `ping` to the endpoint now and records it as a delivery; returns the delivery's
   * ID. Throws BULWARK_ALERT_DELIVERY_FAILED (details: deliveryId, status, error) when refused.
   */
  ping(endpointId: string): Promise<string>;
}

export class CatalogWebhookService implements WebhookService {
  constructor(
    private readonly opts: {
      catalog: Catalog;
      seal: WebhookSecretSeal;
      timeoutMs: number;
      userAgent: string;
      now: () => Date;
    },
  ) {}

  newSecret(endpointId: string) {
    const secret = newWebhookSecret();
    return { secret, encryptedSecret: this.opts.seal.seal(endpointId, secret) };
  }

  async ping(endpointId: string): Promise<string> {
    const { catalog, now } = this.opts;
    const endpoint = await catalog.webhookEndpoint.findUniqueOrThrow({ where: { id: endpointId } });
    const id = randomUUID();
    const createdAt = now();
    const body = await buildAlertBody(
      catalog,
      { id, event: "ping", jobId: null, createdAt, tenantId: endpoint.tenantId },
      undefined,
    );
    // Recorded before sending so that a ping is visible even if this node dies mid-request; pings
    // have no job, so the sweep never sends them again.
    await catalog.webhookDelivery.create({
      data: { id, endpointId, event: "ping", jobId: null, state: "PENDING", body, createdAt },
    });
    const secret = this.opts.seal.open(endpoint.id, endpoint.encryptedSecret);
    const result = await sendWebhook({
      url: endpoint.url,
      secret,
      event: "ping",
      deliveryId: id,
      body,
      timeoutMs: this.opts.timeoutMs,
      userAgent: this.opts.userAgent,
      now,
    });
    const at = now();
    await catalog.webhookDelivery.update({
      where: { id },
      data: {
        state: result.ok ? "DELIVERED" : "FAILED",
        attempts: 1,
        lastStatus: result.status,
        lastError: result.error,
        lastAttemptAt: at,
        deliveredAt: result.ok ? at : null,
      },
    });
    if (!result.ok) {
      throw new BulwarkError(
        "BULWARK_ALERT_DELIVERY_FAILED",
        `the receiver did not accept the test ping: ${result.error}`,
        { details: { deliveryId: id, status: result.status, error: result.error } },
      );
    }
    return id;
  }
}
