// policies ls | show | create | edit | rm | assign | unassign. A policy comes from flags, from a
// JSON or YAML file (--file), or both (flags win). The body is checked against the shared contract
// before it is sent, so a typo is a usage error naming the field instead of a round trip.

import { readFileSync } from "node:fs";
import {
  assignmentSchema,
  createAssignmentRequestSchema,
  createPolicyRequestSchema,
  type Policy,
  policySchema,
  repositoryStatusSchema,
  updatePolicyRequestSchema,
  type VolumeSelector,
} from "@bulwark/api";
import { BulwarkError } from "@bulwark/errors";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { ServerError } from "../api-client.js";
import { defineCommand, type OptionSpec } from "../command.js";
import { formatBytes, formatTime, keyValues, table } from "../format.js";
import { parseSize } from "../values.js";
import {
  API,
  fetchList,
  isId,
  listOptions,
  moreHint,
  noContent,
  resolveAgentId,
  resolveGroupId,
  resolvePolicyId,
  usage,
} from "./common.js";

const policyOptions = {
  file: {
    type: "string",
    valueName: "file",
    description: "the policy as JSON or YAML (flags override its fields)",
  },
  name: { type: "string", description: "the policy's name" },
  description: { type: "string", valueName: "text", description: "what it is for" },
  cron: { type: "string", valueName: "expr", description: 'five-field schedule, e.g. "0 2 * * *"' },
  timezone: {
    type: "string",
    valueName: "zone",
    description: "IANA zone the schedule is read in, e.g. Europe/Berlin",
  },
  window: {
    type: "string",
    valueName: "HH:MM-HH:MM",
    description: 'backup window, e.g. 22:00-06:00; "none" for any time',
  },
  retention: {
    type: "string",
    valueName: "rules",
    description: "e.g. keepLast=3,daily=7,weekly=4,monthly=12 (hourly, yearly too)",
  },
  volumes: {
    type: "string",
    valueName: "selector",
    description: "all-fixed, mount:/,/home or device:/dev/sda,/dev/sdb",
  },
  repository: {
    type: "string",
    valueName: "repo",
    description: "repository name or ID (default: the only one)",
  },
  "pre-hook": { type: "string", valueName: "command", description: "run on the machine before the snapshot" },
  "post-hook": { type: "string", valueName: "command", description: "run on the machine after the snapshot" },
  bandwidth: {
    type: "string",
    valueName: "size",
    description: 'upload limit per second, e.g. 10MiB; "none" to lift',
  },
  enable: { type: "boolean", description: "schedule backups (the default for a new policy)" },
  disable: { type: "boolean", description: "keep the policy but schedule nothing" },
} as const satisfies Record<string, OptionSpec>;

type PolicyFlags = {
  [K in keyof typeof policyOptions]: (typeof policyOptions)[K]["type"] extends "boolean"
    ? boolean
    : string | undefined;
};

/** Reads a policy file: JSON or YAML (YAML is a superset of JSON, so one parser reads both). */
export function readPolicyFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new BulwarkError(
      "BULWARK_CLI_FILE",
      `--file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (err) {
    throw new BulwarkError("BULWARK_CLI_FILE", `--file ${path}: not JSON or YAML: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new BulwarkError("BULWARK_CLI_FILE", `--file ${path}: expected a mapping of policy fields`);
  }
  return value as Record<string, unknown>;
}

const MINUTES_PER_DAY = 24 * 60;

/** "22:00-06:00" → start 1320, 480 minutes long (a window may run past midnight). */
export function parseWindow(text: string): {
  windowStartMinute: number | null;
  windowMinutes: number | null;
} {
  if (text === "none") return { windowStartMinute: null, windowMinutes: null };
  const m = /^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$/.exec(text.trim());
  const minute = (h: string, mm: string) => Number(h) * 60 + Number(mm);
  if (!m || Number(m[1]) > 23 || Number(m[3]) > 24 || Number(m[2]) > 59 || Number(m[4]) > 59) {
    throw usage(`--window ${JSON.stringify(text)}: expected HH:MM-HH:MM, e.g. 22:00-06:00, or none`);
  }
  const start = minute(m[1]!, m[2]!);
  const end = minute(m[3]!, m[4]!);
  const length = (end - start + MINUTES_PER_DAY) % MINUTES_PER_DAY || MINUTES_PER_DAY;
  return { windowStartMinute: start, windowMinutes: length };
}

const RETENTION_RULES = ["keepLast", "hourly", "daily", "weekly", "monthly", "yearly"] as const;

/** "keepLast=3,daily=7" → {keepLast: 3, daily: 7}; the contract checks the counts. */
export function parseRetention(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of text
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^([A-Za-z]+)=(\d+)$/.exec(part);
    const rule = m ? RETENTION_RULES.find((r) => r.toLowerCase() === m[1]!.toLowerCase()) : undefined;
    if (!m || !rule) {
      throw usage(
        `--retention ${JSON.stringify(part)}: expected <rule>=<count>, rule one of ${RETENTION_RULES.join(", ")}`,
      );
    }
    out[rule] = Number(m[2]);
  }
  return out;
}

/** "all-fixed", "mount:/,/home", "device:/dev/sda" → the contract's volume selector. */
export function parseVolumes(text: string): VolumeSelector {
  if (text === "all-fixed") return { kind: "all-fixed" };
  const m = /^(mount|device):(.+)$/.exec(text);
  const list = m
    ? m[2]!
        .split(",")
        .map((p) => p.trim())
        .filter(Boolean)
    : [];
  if (!m || list.length === 0) {
    throw usage(`--volumes ${JSON.stringify(text)}: expected all-fixed, mount:<paths> or device:<paths>`);
  }
  return m[1] === "mount" ? { kind: "mount-points", mountPoints: list } : { kind: "devices", devices: list };
}

/** The fields the flags set (only those given), to lay over the file's fields. */
function fieldsFromFlags(o: PolicyFlags): Record<string, unknown> {
  if (o.enable && o.disable) throw usage("give one of --enable and --disable");
  const out: Record<string, unknown> = {};
  if (o.name !== undefined) out.name = o.name;
  if (o.description !== undefined) out.description = o.description;
  if (o.cron !== undefined) out.scheduleCron = o.cron;
  if (o.timezone !== undefined) out.timezone = o.timezone;
  if (o.window !== undefined) Object.assign(out, parseWindow(o.window));
  if (o.retention !== undefined) out.retention = parseRetention(o.retention);
  if (o.volumes !== undefined) out.volumeSelector = parseVolumes(o.volumes);
  if (o["pre-hook"] !== undefined) out.preHook = o["pre-hook"];
  if (o["post-hook"] !== undefined) out.postHook = o["post-hook"];
  if (o.bandwidth !== undefined)
    out.bandwidthLimitBps = o.bandwidth === "none" ? null : parseSize(o.bandwidth, "--bandwidth");
  if (o.enable) out.enabled = true;
  if (o.disable) out.enabled = false;
  return out;
}

/** Checks a request body against its contract; a failure is a usage error listing each field. */
function checked<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(policy)"}: ${i.message}`);
  throw usage(`invalid policy:\n  ${issues.join("\n  ")}`);
}

async function resolveRepositoryId(
  ctx: { api(): import("../api-client.js").ApiClient },
  value: string | undefined,
): Promise<string> {
  if (value !== undefined && isId(value)) return value;
  const repos = await fetchList(ctx.api(), `${API}/repositories`, repositoryStatusSchema, {}, { all: true });
  if (value === undefined) {
    if (repos.items.length === 1) return repos.items[0]!.id;
    throw usage(`--repository is required: the server has ${repos.items.length} repositories`);
  }
  const match = repos.items.filter((r) => r.name === value);
  if (match.length !== 1) throw usage(`--repository ${JSON.stringify(value)}: no repository of that name`);
  return match[0]!.id;
}

function windowText(p: Policy): string {
  if (p.windowStartMinute === null || p.windowMinutes === null) return "any time";
  const hhmm = (m: number) =>
    `${String(Math.floor(m / 60) % 24).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
  return `${hhmm(p.windowStartMinute)}-${hhmm(p.windowStartMinute + p.windowMinutes)}`;
}

function selectorText(s: VolumeSelector): string {
  if (s.kind === "all-fixed") return "all-fixed";
  return s.kind === "mount-points" ? `mount:${s.mountPoints.join(",")}` : `device:${s.devices.join(",")}`;
}

/** Rules in their fixed order (the catalog's JSON does not keep the order they were given in). */
export function retentionText(r: Record<string, number>): string {
  const rank = (k: string) => {
    const i = RETENTION_RULES.indexOf(k as (typeof RETENTION_RULES)[number]);
    return i === -1 ? RETENTION_RULES.length : i;
  };
  const rules = Object.entries(r).sort(([a], [b]) => rank(a) - rank(b));
  return rules.map(([k, v]) => `${k}=${v}`).join(",") || "keep all";
}

export const policiesLsCommand = defineCommand({
  path: ["policies", "ls"],
  summary: "list backup policies",
  args: [],
  options: {
    search: { type: "string", valueName: "text", description: "name contains this text" },
    ...listOptions,
  },
  examples: ["bulwark policies ls"],
  async run(ctx, { options }) {
    const page = await fetchList(
      ctx.api(),
      `${API}/policies`,
      policySchema,
      { search: options.search },
      options,
    );
    const text = table(
      [
        { header: "ID", value: (p) => p.id },
        { header: "NAME", value: (p) => p.name },
        { header: "ENABLED", value: (p) => (p.enabled ? "yes" : "no") },
        { header: "SCHEDULE", value: (p) => `${p.scheduleCron} ${p.timezone}` },
        { header: "WINDOW", value: windowText },
        { header: "RETENTION", value: (p) => retentionText(p.retention) },
        { header: "VOLUMES", value: (p) => selectorText(p.volumeSelector) },
        { header: "REV", value: (p) => String(p.revision), align: "right" },
      ],
      page.items,
    );
    return { data: page, text: text + moreHint(page) };
  },
});

export const policiesShowCommand = defineCommand({
  path: ["policies", "show"],
  summary: "one policy and where it is assigned",
  args: ["policy"],
  options: {},
  examples: ["bulwark policies show nightly", "bulwark policies show nightly --json > nightly.json"],
  async run(ctx, { args }) {
    const api = ctx.api();
    const id = await resolvePolicyId(api, args.policy);
    const p = await api.get(`${API}/policies/${id}`, policySchema);
    const assignments = await fetchList(
      api,
      `${API}/assignments`,
      assignmentSchema,
      { policyId: id },
      { all: true },
    );
    const now = ctx.now();
    const head = keyValues([
      ["id", p.id],
      ["name", p.name],
      ["description", p.description ?? "-"],
      ["enabled", p.enabled ? "yes" : "no"],
      ["schedule", `${p.scheduleCron} (${p.timezone})`],
      ["window", windowText(p)],
      ["retention", retentionText(p.retention)],
      ["volumes", selectorText(p.volumeSelector)],
      ["repository", p.repositoryId],
      ["pre-hook", p.preHook ?? "-"],
      ["post-hook", p.postHook ?? "-"],
      ["bandwidth", p.bandwidthLimitBps === null ? "unlimited" : `${formatBytes(p.bandwidthLimitBps)}/s`],
      ["revision", String(p.revision)],
      ["updated", formatTime(p.updatedAt, now)],
    ]);
    const list = table(
      [
        { header: "ASSIGNMENT", value: (a) => a.id },
        { header: "TO", value: (a) => (a.groupId ? `group ${a.groupId}` : `machine ${a.agentId}`) },
        { header: "PRIORITY", value: (a) => String(a.priority), align: "right" },
      ],
      assignments.items,
    );
    // --json prints the policy as the API returns it, so it can be edited and fed back with --file.
    return { data: p, text: `${head}\n\nassigned to:\n${list}` };
  },
});

export const policiesCreateCommand = defineCommand({
  path: ["policies", "create"],
  summary: "create a policy from flags and/or a JSON or YAML file",
  args: [],
  options: policyOptions,
  examples: [
    'bulwark policies create --name nightly --cron "0 2 * * *" --timezone Europe/Berlin --retention daily=7,weekly=4 --volumes all-fixed',
    "bulwark policies create --file nightly.yaml",
  ],
  async run(ctx, { options }) {
    const base = options.file === undefined ? {} : readPolicyFile(options.file);
    const merged: Record<string, unknown> = { ...base, ...fieldsFromFlags(options) };
    // A file saved from `policies show --json` carries read-only fields; the server takes none of them.
    for (const key of ["id", "revision", "createdAt", "updatedAt"]) delete merged[key];
    if (merged.repositoryId === undefined || options.repository !== undefined) {
      merged.repositoryId = await resolveRepositoryId(ctx, options.repository);
    }
    const body = checked(createPolicyRequestSchema, merged);
    const p = await ctx.api().post(`${API}/policies`, body, policySchema);
    return { data: p, text: `created policy ${p.name} (${p.id})` };
  },
});

export const policiesEditCommand = defineCommand({
  path: ["policies", "edit"],
  summary: "change a policy's fields from flags and/or a file (its revision goes up)",
  args: ["policy"],
  options: policyOptions,
  examples: [
    "bulwark policies edit nightly --retention daily=14,weekly=8",
    "bulwark policies edit nightly --disable",
  ],
  async run(ctx, { args, options }) {
    const api = ctx.api();
    const id = await resolvePolicyId(api, args.policy);
    const base = options.file === undefined ? {} : readPolicyFile(options.file);
    const merged: Record<string, unknown> = { ...base, ...fieldsFromFlags(options) };
    for (const key of ["id", "revision", "createdAt", "updatedAt"]) delete merged[key];
    if (options.repository !== undefined)
      merged.repositoryId = await resolveRepositoryId(ctx, options.repository);
    const body = checked(updatePolicyRequestSchema, merged);
    const p = await api.patch(`${API}/policies/${id}`, body, policySchema);
    return { data: p, text: `updated policy ${p.name} (${p.id}), revision ${p.revision}` };
  },
});

export const policiesRmCommand = defineCommand({
  path: ["policies", "rm"],
  summary: "delete a policy (its assignments go with it; restore points stay)",
  args: ["policy"],
  options: {},
  examples: ["bulwark policies rm nightly"],
  async run(ctx, { args }) {
    const api = ctx.api();
    const id = await resolvePolicyId(api, args.policy);
    await api.delete(`${API}/policies/${id}`, noContent);
    return { data: { id, deleted: true }, text: `deleted policy ${args.policy} (${id})` };
  },
});

const targetOptions = {
  group: { type: "string", valueName: "group", description: "the group (name or ID)" },
  agent: { type: "string", valueName: "agent", description: "one machine (hostname or ID)" },
} as const satisfies Record<string, OptionSpec>;

async function target(
  api: import("../api-client.js").ApiClient,
  o: { group: string | undefined; agent: string | undefined },
): Promise<{ groupId?: string; agentId?: string }> {
  if ((o.group === undefined) === (o.agent === undefined))
    throw usage("give exactly one of --group and --agent");
  return o.group !== undefined
    ? { groupId: await resolveGroupId(api, o.group) }
    : { agentId: await resolveAgentId(api, o.agent!) };
}

export const policiesAssignCommand = defineCommand({
  path: ["policies", "assign"],
  summary: "apply a policy to a group or one machine",
  args: ["policy"],
  options: {
    ...targetOptions,
    priority: {
      type: "string",
      valueName: "n",
      description: "among group policies of a machine the lowest wins (default 100)",
    },
  },
  examples: [
    "bulwark policies assign nightly --group web",
    "bulwark policies assign db-hourly --agent db-01",
  ],
  async run(ctx, { args, options }) {
    const api = ctx.api();
    const policyId = await resolvePolicyId(api, args.policy);
    const to = await target(api, options);
    const priority = options.priority === undefined ? undefined : Number(options.priority);
    const body = createAssignmentRequestSchema.safeParse({
      policyId,
      ...to,
      ...(priority !== undefined ? { priority } : {}),
    });
    if (!body.success)
      throw usage(`--priority ${JSON.stringify(options.priority)}: expected an integer 0-10000`);
    const a = await api.post(`${API}/assignments`, body.data, assignmentSchema);
    return {
      data: a,
      text: `assigned ${args.policy} to ${options.group !== undefined ? `group ${options.group}` : `machine ${options.agent}`} (${a.id})`,
    };
  },
});

export const policiesUnassignCommand = defineCommand({
  path: ["policies", "unassign"],
  summary: "remove a policy from a group or machine",
  args: ["policy"],
  options: targetOptions,
  examples: ["bulwark policies unassign nightly --group web"],
  async run(ctx, { args, options }) {
    const api = ctx.api();
    const policyId = await resolvePolicyId(api, args.policy);
    const to = await target(api, options);
    const found = await fetchList(
      api,
      `${API}/assignments`,
      assignmentSchema,
      { policyId, ...to },
      { all: true },
    );
    const assignment = found.items[0];
    if (!assignment) {
      const to = options.group ?? options.agent;
      throw new ServerError(
        "BULWARK_API_NOT_FOUND",
        `${args.policy} is not assigned to ${to}`,
        404,
        undefined,
      );
    }
    await api.delete(`${API}/assignments/${assignment.id}`, noContent);
    return {
      data: { id: assignment.id, deleted: true },
      text: `removed ${args.policy} from ${options.group ?? options.agent}`,
    };
  },
});
