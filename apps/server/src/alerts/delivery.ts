// The delivery worker's step for one BullMQ attempt (docs/alerts.md): re-read the row, fix the
// body at the first attempt, sign and POST, record the outcome. A failure throws so that BullMQ
// retries with backoff; the last failure leaves the row FAILED.

import type { Catalog } from "@bulwark/catalog";
import type { Job as BullJob } from "bullmq";
import type { Logger } from "pino";
import { buildAlertBody } from "./payload.js";
import type { WebhookSecretSeal } from "./secret-seal.js";
import { type AttemptResult, sendWebhook } from "./send.js";
import type { AlertSettings } from "./settings.js";

export interface DeliveryContext {
  catalog: Catalog;
  seal: WebhookSecretSeal;
  settings: AlertSettings;
  publicUrl: string | undefined;
  userAgent: string;
  log: Logger;
  now: () => Date;
}

export interface DeliveryData {
  deliveryId: string;
}

/** Sends one delivery row once (any state but PENDING is left alone) and records the attempt. */
export async function attemptDelivery(
  ctx: DeliveryContext,
  deliveryId: string,
): Promise<(AttemptResult & { attempts: number }) | undefined> {
  const row = await ctx.catalog.webhookDelivery.findUnique({
    where: { id: deliveryId },
    include: { endpoint: true },
  });
  if (row?.state !== "PENDING") return undefined;
  let body = row.body;
  if (body === null) {
    body = await buildAlertBody(ctx.catalog, { ...row, tenantId: row.endpoint.tenantId }, ctx.publicUrl);
    await ctx.catalog.webhookDelivery.update({ where: { id: row.id }, data: { body } });
  }
  let result: AttemptResult;
  try {
    const secret = ctx.seal.open(row.endpoint.id, row.endpoint.encryptedSecret);
    result = await sendWebhook({
      url: row.endpoint.url,
      secret,
      event: row.event,
      deliveryId: row.id,
      body,
      timeoutMs: ctx.settings.deliveryTimeoutMs,
      userAgent: ctx.userAgent,
      now: ctx.now,
    });
  } catch (err) {
    result = { ok: false, status: null, error: (err as Error).message.slice(0, 500) };
  }
  const attempts = row.attempts + 1;
  const at = ctx.now();
  await ctx.catalog.webhookDelivery.updateMany({
    where: { id: row.id, state: "PENDING" },
    data: result.ok
      ? {
          state: "DELIVERED",
          attempts,
          lastStatus: result.status,
          lastError: null,
          lastAttemptAt: at,
          deliveredAt: at,
          nextAttemptAt: null,
        }
      : { attempts, lastStatus: result.status, lastError: result.error, lastAttemptAt: at },
  });
  return { ...result, attempts };
}

export async function processDelivery(ctx: DeliveryContext, job: BullJob<DeliveryData>): Promise<void> {
  const outcome = await attemptDelivery(ctx, job.data.deliveryId);
  if (!outcome || outcome.ok) return;
  const allowed = job.opts.attempts ?? 1;
  const final = job.attemptsMade + 1 >= allowed;
  const nextAttemptAt = final
    ? null
    : new Date(ctx.now().getTime() + ctx.settings.deliveryBackoffMs * 2 ** job.attemptsMade);
  await ctx.catalog.webhookDelivery.updateMany({
    where: { id: job.data.deliveryId, state: "PENDING" },
    data: final ? { state: "FAILED", nextAttemptAt: null } : { nextAttemptAt },
  });
  ctx.log.warn(
    {
      delivery: job.data.deliveryId,
      attempt: job.attemptsMade + 1,
      final,
      status: outcome.status,
      err: outcome.error,
    },
    "webhook delivery attempt failed",
  );
  throw new Error(`webhook delivery failed: ${outcome.error}`);
}
