// backups ls | show | rm: restore points.

import { type Backup, backupSchema } from "@bulwark/api";
import { defineCommand } from "../command.js";
import { formatBytes, formatTime, keyValues, table } from "../format.js";
import { parseSince } from "../values.js";
import {
  API,
  enumValue,
  fetchList,
  listOptions,
  moreHint,
  requireYes,
  resolveAgentId,
  yesOption,
} from "./common.js";

export const backupsLsCommand = defineCommand({
  path: ["backups", "ls"],
  summary: "list restore points, newest first, by machine, volume and time",
  args: [],
  options: {
    agent: { type: "string", valueName: "agent", description: "one machine (hostname or ID)" },
    volume: { type: "string", valueName: "volume-id", description: "one volume (ID, see `agents show`)" },
    status: {
      type: "string",
      valueName: "available|deleting",
      description: "only restore points in this state",
    },
    since: { type: "string", valueName: "when", description: "captured at or after: 24h, 7d or an ISO time" },
    until: { type: "string", valueName: "when", description: "captured before: 24h, 7d or an ISO time" },
    ...listOptions,
  },
  examples: ["bulwark backups ls --agent web-01 --since 7d", "bulwark backups ls --volume 3c1d… --json"],
  async run(ctx, { options }) {
    const api = ctx.api();
    const now = ctx.now();
    const agentId = options.agent === undefined ? undefined : await resolveAgentId(api, options.agent);
    const status = enumValue("--status", options.status, ["AVAILABLE", "DELETING"] as const, true);
    const page = await fetchList(
      api,
      `${API}/backups`,
      backupSchema,
      {
        agentId,
        volumeId: options.volume,
        status,
        from:
          options.since === undefined ? undefined : parseSince(options.since, "--since", now).toISOString(),
        to: options.until === undefined ? undefined : parseSince(options.until, "--until", now).toISOString(),
      },
      options,
    );
    const text = table(
      [
        { header: "ID", value: (b: Backup) => b.id },
        { header: "CAPTURED", value: (b) => formatTime(b.capturedAt, now) },
        { header: "AGENT", value: (b) => b.agentId },
        { header: "VOLUME", value: (b) => b.volumeId },
        { header: "SIZE", value: (b) => formatBytes(b.volumeSize), align: "right" },
        { header: "CHANGED", value: (b) => formatBytes(b.changedBytes), align: "right" },
        { header: "STORED", value: (b) => formatBytes(b.storedBytes), align: "right" },
        { header: "METHOD", value: (b) => b.method },
        { header: "STATUS", value: (b) => b.status },
      ],
      page.items,
    );
    return { data: page, text: text + moreHint(page) };
  },
});

export const backupsShowCommand = defineCommand({
  path: ["backups", "show"],
  summary: "one restore point",
  args: ["id"],
  options: {},
  examples: ["bulwark backups show 6e2a…"],
  async run(ctx, { args }) {
    const b = await ctx.api().get(`${API}/backups/${encodeURIComponent(args.id)}`, backupSchema);
    const now = ctx.now();
    return {
      data: b,
      text: keyValues([
        ["id", b.id],
        ["status", b.deletingSince ? `${b.status} since ${formatTime(b.deletingSince, now)}` : b.status],
        ["machine", b.agentId],
        ["volume", b.volumeId],
        ["repository", b.repositoryId],
        ["captured", formatTime(b.capturedAt, now)],
        ["committed", formatTime(b.committedAt, now)],
        ["volume size", formatBytes(b.volumeSize)],
        ["chunk size", formatBytes(b.chunkSize)],
        ["changed", formatBytes(b.changedBytes)],
        ["stored", `${formatBytes(b.storedBytes)} (new in the repository after dedup and compression)`],
        ["method", b.method],
        ["previous", b.previousId ?? "-"],
        ["job", b.jobId ?? "-"],
      ]),
    };
  },
});

export const backupsRmCommand = defineCommand({
  path: ["backups", "rm"],
  summary: "delete a restore point (marked DELETING; gc reclaims its space)",
  args: ["id"],
  options: { ...yesOption },
  examples: ["bulwark backups rm 6e2a… --yes"],
  async run(ctx, { args, options }) {
    requireYes(options.yes, `deleting restore point ${args.id}`);
    const b = await ctx.api().delete(`${API}/backups/${encodeURIComponent(args.id)}`, backupSchema);
    return { data: b, text: `restore point ${b.id} is ${b.status}` };
  },
});
