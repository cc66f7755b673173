// Alert delivery timings (docs/alerts.md). Fixed defaults with their reasons; tests shorten them.

export interface AlertSettings {
  /** BullMQ keys under bull:<queuePrefix>:alert-delivery (the job system's prefix). */
  queuePrefix: string;
  /** How often each node looks for final jobs without a delivery. 15 s: an alert is about a backup, not a page within seconds. */
  sweepIntervalMs: number;
  /** Attempts per delivery, the first included. 8 with the backoff below spans about an hour. */
  deliveryAttempts: number;
  /** First retry delay; doubles each time (BullMQ exponential backoff). */
  deliveryBackoffMs: number;
  /** One attempt's limit: a receiver that hangs must not hold a worker. */
  deliveryTimeoutMs: number;
  /** Deliveries one node sends at once. */
  deliveryConcurrency: number;
  /** Deliveries queued per sweep at most; the rest wait for the next sweep. */
  sweepBatch: number;
}

export const DEFAULT_ALERT_SETTINGS: Omit<AlertSettings, "queuePrefix"> = {
  sweepIntervalMs: 15_000,
  deliveryAttempts: 8,
  deliveryBackoffMs: 30_000,
  deliveryTimeoutMs: 10_000,
  deliveryConcurrency: 4,
  sweepBatch: 500,
};
