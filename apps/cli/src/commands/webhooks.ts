// webhooks ls | create | rm | test | deliveries: signed alert webhooks (docs/alerts.md). The
// signing secret is shown once by the server: the CLI writes it to a 0600 file (--out) or prints
// it on stdout, never anywhere else.

import {
  ALERT_EVENTS,
  createWebhookResponseSchema,
  webhookDeliverySchema,
  webhookDeliveryStateSchema,
  webhookEndpointSchema,
  webhookTestResponseSchema,
} from "@bulwark/api";
import { BulwarkError } from "@bulwark/errors";
import type { ApiClient } from "../api-client.js";
import { defineCommand } from "../command.js";
import { formatList, formatTime, table } from "../format.js";
import { writePrivateFile } from "../secrets.js";
import {
  API,
  enumValue,
  fetchList,
  isId,
  listOptions,
  moreHint,
  noContent,
  requireYes,
  yesOption,
} from "./common.js";

/** A webhook by ID or exact name (case-insensitive). */
async function resolveWebhookId(api: ApiClient, value: string): Promise<string> {
  if (isId(value)) return value;
  const page = await fetchList(api, `${API}/webhooks`, webhookEndpointSchema, {}, { all: true });
  const exact = page.items.filter((w) => w.name.toLowerCase() === value.toLowerCase());
  if (exact.length === 1) return exact[0]!.id;
  throw new BulwarkError(
    "BULWARK_API_NOT_FOUND",
    `no webhook ${JSON.stringify(value)}${exact.length > 1 ? " (several match; use the ID)" : ""}`,
  );
}

export const webhooksLsCommand = defineCommand({
  path: ["webhooks", "ls"],
  summary: "list alert webhook endpoints (never their secrets)",
  args: [],
  options: { ...listOptions },
  examples: ["bulwark webhooks ls", "bulwark webhooks ls --json"],
  async run(ctx, { options }) {
    const page = await fetchList(ctx.api(), `${API}/webhooks`, webhookEndpointSchema, {}, options);
    const now = ctx.now();
    const text = table(
      [
        { header: "ID", value: (w) => w.id },
        { header: "NAME", value: (w) => w.name },
        { header: "STATE", value: (w) => (w.enabled ? "enabled" : "disabled") },
        { header: "EVENTS", value: (w) => formatList(w.events) },
        { header: "URL", value: (w) => w.url },
        { header: "CREATED", value: (w) => formatTime(w.createdAt, now) },
      ],
      page.items,
    );
    return { data: page, text: text + moreHint(page) };
  },
});

export const webhooksCreateCommand = defineCommand({
  path: ["webhooks", "create"],
  summary: "add an alert webhook endpoint; its signing secret is shown once (or written with --out)",
  args: ["name", "url"],
  options: {
    event: {
      type: "string",
      multiple: true,
      description: `subscribe to this event (default all: ${ALERT_EVENTS.join(", ")})`,
    },
    disabled: { type: "boolean", description: "create it disabled (no alerts until enabled)" },
    out: {
      type: "string",
      valueName: "file",
      description: "write the signing secret here (mode 0600; must not exist)",
    },
  },
  examples: [
    "bulwark webhooks create oncall https://alerts.example.org/bulwark --out oncall.secret",
    "bulwark webhooks create chat https://chat.example.org/hook --event backup.failed --event backup.missed",
  ],
  async run(ctx, { args, options }) {
    const events = options.event.map((e) => enumValue("--event", e, ALERT_EVENTS, false)!);
    const res = await ctx.api().post(
      `${API}/webhooks`,
      {
        name: args.name,
        url: args.url,
        ...(events.length ? { events } : {}),
        ...(options.disabled ? { enabled: false } : {}),
      },
      createWebhookResponseSchema,
    );
    if (options.out === undefined) {
      return {
        data: res,
        text: `created webhook ${res.webhook.name} (${res.webhook.id}); signing secret (shown once):\n${res.secret}`,
      };
    }
    writePrivateFile(options.out, `${res.secret}\n`);
    return {
      data: { webhook: res.webhook, out: options.out },
      text: `created webhook ${res.webhook.name} (${res.webhook.id}); signing secret written to ${options.out}`,
    };
  },
});

export const webhooksRmCommand = defineCommand({
  path: ["webhooks", "rm"],
  summary: "delete an alert webhook endpoint and its delivery history",
  args: ["webhook"],
  options: { ...yesOption },
  examples: ["bulwark webhooks rm oncall --yes"],
  async run(ctx, { args, options }) {
    requireYes(options.yes, "deleting a webhook");
    const api = ctx.api();
    const id = await resolveWebhookId(api, args.webhook);
    await api.delete(`${API}/webhooks/${id}`, noContent);
    return { data: { id, deleted: true }, text: `deleted webhook ${args.webhook} (${id})` };
  },
});

export const webhooksTestCommand = defineCommand({
  path: ["webhooks", "test"],
  summary: "send a signed ping to an endpoint now (fails with BULWARK_ALERT_DELIVERY_FAILED when refused)",
  args: ["webhook"],
  options: {},
  examples: ["bulwark webhooks test oncall"],
  async run(ctx, { args }) {
    const api = ctx.api();
    const id = await resolveWebhookId(api, args.webhook);
    const res = await api.post(`${API}/webhooks/${id}/test`, {}, webhookTestResponseSchema);
    return {
      data: res,
      text: `ping ${res.delivery.id} accepted (HTTP ${res.delivery.lastStatus ?? "?"})`,
    };
  },
});

export const webhooksDeliveriesCommand = defineCommand({
  path: ["webhooks", "deliveries"],
  summary: "an endpoint's deliveries, newest first: state, attempts, last answer",
  args: ["webhook"],
  options: {
    state: { type: "string", description: "only pending, delivered or failed ones" },
    ...listOptions,
  },
  examples: ["bulwark webhooks deliveries oncall --state failed"],
  async run(ctx, { args, options }) {
    const api = ctx.api();
    const state = enumValue("--state", options.state, webhookDeliveryStateSchema.options, true);
    const id = await resolveWebhookId(api, args.webhook);
    const page = await fetchList(
      api,
      `${API}/webhooks/${id}/deliveries`,
      webhookDeliverySchema,
      { state },
      options,
    );
    const now = ctx.now();
    const text = table(
      [
        { header: "DELIVERY", value: (d) => d.id },
        { header: "EVENT", value: (d) => d.event },
        { header: "JOB", value: (d) => d.jobId ?? "-" },
        { header: "STATE", value: (d) => d.state },
        { header: "ATTEMPTS", value: (d) => String(d.attempts), align: "right" },
        {
          header: "LAST",
          value: (d) => (d.lastStatus !== null ? `HTTP ${d.lastStatus}` : (d.lastError ?? "-")),
        },
        { header: "CREATED", value: (d) => formatTime(d.createdAt, now) },
      ],
      page.items,
    );
    return { data: page, text: text + moreHint(page) };
  },
});
