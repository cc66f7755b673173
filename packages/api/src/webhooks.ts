// Signed webhook alerts (docs/alerts.md): endpoints admins manage and the deliveries made to them.
import { z } from "zod";
import { idSchema, timestampSchema } from "./common.js";

/** Events an endpoint can subscribe to; `ping` is only sent by a test and cannot be subscribed. */
export const ALERT_EVENTS = ["backup.failed", "backup.missed", "restore.failed", "verify.failed"] as const;
export const alertEventSchema = z.enum(ALERT_EVENTS);
export type AlertEvent = z.infer<typeof alertEventSchema>;

/** http(s) only, no user:password@ in it (it would travel in logs and in the delivery list). */
export const webhookUrlSchema = z
  .string()
  .max(2000)
  .refine(
    (v) => {
      try {
        const u = new URL(v);
        return (u.protocol === "http:" || u.protocol === "https:") && u.username === "" && u.password === "";
      } catch {
        return false;
      }
    },
    { message: "expected an http:// or https:// URL without credentials" },
  );

const nameSchema = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[^\p{Cc}]+$/u, "no control characters");

export const webhookEndpointSchema = z.object({
  id: idSchema,
  name: z.string(),
  url: z.string(),
  events: z.array(alertEventSchema),
  enabled: z.boolean(),
  createdAt: timestampSchema,
  updatedAt: timestampSchema,
});
export type WebhookEndpoint = z.infer<typeof webhookEndpointSchema>;

export const createWebhookRequestSchema = z.object({
  name: nameSchema,
  url: webhookUrlSchema,
  /** Default: every event. */
  events: z.array(alertEventSchema).min(1).max(ALERT_EVENTS.length).optional(),
  enabled: z.boolean().optional(),
});
export type CreateWebhookRequest = z.infer<typeof createWebhookRequestSchema>;

/** The signing secret is in this answer only (whsec_…); it is never returned again. */
export const createWebhookResponseSchema = z.object({
  webhook: webhookEndpointSchema,
  secret: z.string(),
});
export type CreateWebhookResponse = z.infer<typeof createWebhookResponseSchema>;

export const updateWebhookRequestSchema = z
  .object({
    name: nameSchema.optional(),
    url: webhookUrlSchema.optional(),
    events: z.array(alertEventSchema).min(1).max(ALERT_EVENTS.length).optional(),
    enabled: z.boolean().optional(),
  })
  .refine((v) => Object.keys(v).length > 0, { message: "nothing to change" });
export type UpdateWebhookRequest = z.infer<typeof updateWebhookRequestSchema>;

export const webhookDeliveryStateSchema = z.enum(["PENDING", "DELIVERED", "FAILED"]);

export const webhookDeliverySchema = z.object({
  /** The Bulwark-Delivery header: the same on every attempt of this delivery. */
  id: idSchema,
  endpointId: idSchema,
  event: z.string(),
  jobId: idSchema.nullable(),
  state: webhookDeliveryStateSchema,
  attempts: z.number().int(),
  lastStatus: z.number().int().nullable(),
  lastError: z.string().nullable(),
  createdAt: timestampSchema,
  lastAttemptAt: timestampSchema.nullable(),
  nextAttemptAt: timestampSchema.nullable(),
  deliveredAt: timestampSchema.nullable(),
});
export type WebhookDelivery = z.infer<typeof webhookDeliverySchema>;

export const webhookDeliveryListQuerySchema = z.object({
  state: webhookDeliveryStateSchema.optional(),
});

/** POST /webhooks/:id/test: the signed ping was accepted (a refusal is a BULWARK_ALERT_DELIVERY_FAILED error). */
export const webhookTestResponseSchema = z.object({ delivery: webhookDeliverySchema });
