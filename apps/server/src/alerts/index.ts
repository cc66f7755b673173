export { attemptDelivery, type DeliveryContext, processDelivery } from "./delivery.js";
export { JOB_EVENTS, pendingDeliveries, recordAlerts } from "./outbox.js";
export { buildAlertBody, jobLink, PAYLOAD_VERSION } from "./payload.js";
export { WebhookSecretSeal } from "./secret-seal.js";
export { type AttemptResult, sendWebhook } from "./send.js";
export { CatalogWebhookService, type WebhookService } from "./service.js";
export { type AlertSettings, DEFAULT_ALERT_SETTINGS } from "./settings.js";
export {
  DEFAULT_TOLERANCE_SECONDS,
  DELIVERY_HEADER,
  EVENT_HEADER,
  newWebhookSecret,
  SIGNATURE_HEADER,
  signatureHeader,
  type VerifyResult,
  verifySignature,
  WEBHOOK_SECRET_PATTERN,
} from "./signing.js";
export { AlertSystem, type AlertSystemOptions, DELIVERY_QUEUE } from "./system.js";
