// agents ls | show | revoke: the machines enrolled in the fleet.

import { type Agent, agentDetailSchema, agentSchema, agentStatusFilterSchema } from "@bulwark/api";
import { defineCommand } from "../command.js";
import { formatBytes, formatList, formatTime, keyValues, table } from "../format.js";
import {
  API,
  enumValue,
  fetchList,
  listOptions,
  moreHint,
  requireYes,
  resolveAgentId,
  resolveGroupId,
  yesOption,
} from "./common.js";

function state(a: Pick<Agent, "status" | "online">): string {
  return a.status === "REVOKED" ? "revoked" : a.online ? "online" : "offline";
}

export const agentsLsCommand = defineCommand({
  path: ["agents", "ls"],
  summary: "list machines, optionally by group, tag, state or hostname",
  args: [],
  options: {
    group: { type: "string", valueName: "group", description: "only members of this group (name or ID)" },
    tag: { type: "string", description: "only machines with this tag" },
    status: {
      type: "string",
      valueName: "online|offline|revoked",
      description: "only machines in this state",
    },
    search: { type: "string", valueName: "text", description: "hostname contains this text" },
    ...listOptions,
  },
  examples: ["bulwark agents ls --group web --status offline", "bulwark agents ls --tag prod --json"],
  async run(ctx, { options }) {
    const api = ctx.api();
    const status = enumValue("--status", options.status, agentStatusFilterSchema.options);
    const group = options.group === undefined ? undefined : await resolveGroupId(api, options.group);
    const page = await fetchList(
      api,
      `${API}/agents`,
      agentSchema,
      { group, tag: options.tag, status, search: options.search },
      options,
    );
    const now = ctx.now();
    const text = table(
      [
        { header: "ID", value: (a) => a.id },
        { header: "HOSTNAME", value: (a) => a.hostname },
        { header: "STATE", value: state },
        { header: "OS", value: (a) => [a.os, a.osVersion].filter(Boolean).join(" ") },
        { header: "AGENT", value: (a) => a.agentVersion },
        { header: "GROUPS", value: (a) => formatList(a.groups.map((g) => g.name)) },
        { header: "TAGS", value: (a) => formatList(a.tags) },
        { header: "LAST SEEN", value: (a) => formatTime(a.lastSeenAt, now) },
      ],
      page.items,
    );
    return { data: page, text: text + moreHint(page) };
  },
});

export const agentsShowCommand = defineCommand({
  path: ["agents", "show"],
  summary: "one machine: its volumes, last backup and RPO state per volume, effective policy",
  args: ["agent"],
  options: {},
  examples: ["bulwark agents show web-01", "bulwark agents show 0b7f…-uuid --json"],
  async run(ctx, { args }) {
    const api = ctx.api();
    const id = await resolveAgentId(api, args.agent);
    const a = await api.get(`${API}/agents/${id}`, agentDetailSchema);
    const now = ctx.now();
    const policy = a.effectivePolicy;
    const head = keyValues([
      ["id", a.id],
      ["hostname", a.hostname],
      ["state", state(a)],
      ["machine id", a.machineId],
      ["os", [a.os, a.osVersion, a.arch].filter(Boolean).join(" ")],
      ["agent version", a.agentVersion],
      ["groups", formatList(a.groups.map((g) => g.name))],
      ["tags", formatList(a.tags)],
      ["enrolled", formatTime(a.enrolledAt, now)],
      ["last seen", formatTime(a.lastSeenAt, now)],
      ...(a.revokedAt ? ([["revoked", formatTime(a.revokedAt, now)]] as [string, string][]) : []),
      [
        "policy",
        policy
          ? `${policy.name} (${policy.scheduleCron} ${policy.timezone}, via ${policy.via}${policy.enabled ? "" : ", disabled"})`
          : "none",
      ],
    ]);
    const volumes = table(
      [
        { header: "VOLUME", value: (v) => v.id },
        { header: "DEVICE", value: (v) => v.devicePath },
        { header: "MOUNT", value: (v) => v.mountPoint ?? "-" },
        { header: "FS", value: (v) => v.fsType ?? "-" },
        { header: "SIZE", value: (v) => formatBytes(v.sizeBytes), align: "right" },
        {
          header: "LAST BACKUP",
          value: (v) => (v.lastBackup ? formatTime(v.lastBackup.capturedAt, now) : "-"),
        },
        { header: "RPO", value: (v) => (v.gone ? `${v.rpo} (gone)` : v.rpo) },
      ],
      a.volumes,
    );
    return { data: a, text: `${head}\n\nvolumes:\n${volumes}` };
  },
});

export const agentsRevokeCommand = defineCommand({
  path: ["agents", "revoke"],
  summary: "revoke a machine: its certificates stop working and its control stream closes",
  args: ["agent"],
  options: { ...yesOption },
  examples: ["bulwark agents revoke web-01 --yes"],
  async run(ctx, { args, options }) {
    requireYes(options.yes, `revoking ${args.agent}`);
    const api = ctx.api();
    const id = await resolveAgentId(api, args.agent);
    const a = await api.post(`${API}/agents/${id}/revoke`, {}, agentSchema);
    return { data: a, text: `revoked ${a.hostname} (${a.id})` };
  },
});
