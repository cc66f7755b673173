// Alerting on one server node (docs/alerts.md): a sweep timer that turns final jobs into outbox
// rows and queues their deliveries, and a BullMQ worker that sends them with retries. Every node
// runs one; the outbox's unique key and the delivery ID as BullMQ job ID keep them from doubling.
// The sweep is a local timer rather than a BullMQ scheduler so that it keeps running, and
// re-queues lost deliveries, even after Redis lost its data.

import type { Catalog } from "@bulwark/catalog";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import type { Logger } from "pino";
import { type DeliveryContext, type DeliveryData, processDelivery } from "./delivery.js";
import { pendingDeliveries, recordAlerts } from "./outbox.js";
import type { WebhookSecretSeal } from "./secret-seal.js";
import { type AlertSettings, DEFAULT_ALERT_SETTINGS } from "./settings.js";

export const DELIVERY_QUEUE = "alert-delivery";

export interface AlertSystemOptions {
  catalog: Catalog;
  redisUrl: string;
  seal: WebhookSecretSeal;
  log: Logger;
  settings: Partial<AlertSettings> & { queuePrefix: string };
  publicUrl?: string;
  userAgent: string;
  now?: () => Date;
  /** Run the sweep and the delivery worker on this node (default true). */
  workers?: boolean;
}

export class AlertSystem {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<unknown> | undefined;
  private worker: Worker<DeliveryData> | undefined;
  private closed = false;

  private constructor(
    readonly ctx: DeliveryContext,
    private readonly connection: Redis,
    readonly queue: Queue<DeliveryData>,
  ) {}

  static async start(opts: AlertSystemOptions): Promise<AlertSystem> {
    const settings: AlertSettings = { ...DEFAULT_ALERT_SETTINGS, ...opts.settings };
    const connection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
    connection.on("error", (err) => opts.log.warn({ err: err.message }, "redis connection error (alerts)"));
    const queue = new Queue<DeliveryData>(DELIVERY_QUEUE, {
      connection,
      prefix: `bull:${settings.queuePrefix}`,
    });
    const ctx: DeliveryContext = {
      catalog: opts.catalog,
      seal: opts.seal,
      settings,
      publicUrl: opts.publicUrl,
      userAgent: opts.userAgent,
      log: opts.log,
      now: opts.now ?? (() => new Date()),
    };
    const system = new AlertSystem(ctx, connection, queue);
    if (opts.workers !== false) system.startWorkers();
    return system;
  }

  private startWorkers(): void {
    const s = this.ctx.settings;
    this.worker = new Worker<DeliveryData>(DELIVERY_QUEUE, (job) => processDelivery(this.ctx, job), {
      connection: this.connection,
      prefix: `bull:${s.queuePrefix}`,
      concurrency: s.deliveryConcurrency,
    });
    this.worker.on("error", (err) => this.ctx.log.warn({ err: err.message }, "alert worker error"));
    const tick = () => {
      if (this.closed) return;
      this.sweeping = this.sweep()
        .catch((err: unknown) => this.ctx.log.warn({ err: (err as Error).message }, "alert sweep failed"))
        .finally(() => {
          this.sweeping = undefined;
          if (!this.closed) this.timer = setTimeout(tick, s.sweepIntervalMs);
        });
    };
    tick();
  }

  /** Records new alerts and queues every pending delivery (idempotent; tests call it directly). */
  async sweep(): Promise<{ recorded: number; queued: number }> {
    const s = this.ctx.settings;
    const recorded = await recordAlerts(this.ctx.catalog, this.ctx.now());
    const ids = await pendingDeliveries(this.ctx.catalog, s.sweepBatch);
    if (ids.length > 0) {
      await this.queue.addBulk(
        ids.map((deliveryId) => ({
          name: "deliver",
          data: { deliveryId },
          opts: {
            jobId: deliveryId,
            attempts: s.deliveryAttempts,
            backoff: { type: "exponential", delay: s.deliveryBackoffMs },
            // Gone once settled, so a delivery still PENDING in the catalog can always be queued again.
            removeOnComplete: true,
            removeOnFail: true,
          },
        })),
      );
    }
    if (recorded > 0) this.ctx.log.info({ recorded, queued: ids.length }, "webhook alerts recorded");
    return { recorded, queued: ids.length };
  }

  async ready(): Promise<void> {
    await this.worker?.waitUntilReady();
  }

  async close(opts: { force?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.sweeping;
    await this.worker?.close(opts.force ?? false);
    await this.queue.close();
    this.connection.disconnect();
  }
}
