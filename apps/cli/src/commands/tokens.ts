// tokens enroll create | ls | revoke (tokens that let a machine join) and tokens api create | ls |
// revoke (tokens for scripts and this CLI). A token's secret is shown once by the server: the CLI
// writes it to a 0600 file (--out) or prints it on stdout, never anywhere else.

import {
  apiTokenSchema,
  createApiTokenResponseSchema,
  createEnrollmentTokenResponseSchema,
  enrollmentTokenSchema,
  roleSchema,
} from "@bulwark/api";
import { defineCommand } from "../command.js";
import { formatList, formatTime, table } from "../format.js";
import { writePrivateFile } from "../secrets.js";
import { parseDuration } from "../values.js";
import {
  API,
  enumValue,
  fetchList,
  listOptions,
  moreHint,
  noContent,
  resolveGroupId,
  resolveUserId,
} from "./common.js";

function withNewline(text: string): string {
  return text.endsWith("\n") ? text : `${text}\n`;
}

export const enrollCreateCommand = defineCommand({
  path: ["tokens", "enroll", "create"],
  summary: "mint a single-use enrollment token file for `bulwark-agent enroll --token-file`",
  args: [],
  options: {
    group: { type: "string", valueName: "group", description: "the machine joins this group (name or ID)" },
    tag: { type: "string", multiple: true, description: "the machine gets this tag" },
    ttl: {
      type: "string",
      valueName: "duration",
      description: "how long the token is valid, e.g. 1h (default 24h)",
    },
    out: {
      type: "string",
      valueName: "file",
      description: "write the token file here (mode 0600; must not exist)",
    },
  },
  examples: [
    "bulwark tokens enroll create --group web --tag prod --ttl 1h --out web-01.token",
    "bulwark tokens enroll create --ttl 2h > token.json   # stdout: the token file itself",
  ],
  async run(ctx, { options }) {
    const api = ctx.api();
    const groupId = options.group === undefined ? undefined : await resolveGroupId(api, options.group);
    const ttlSeconds = options.ttl === undefined ? undefined : parseDuration(options.ttl, "--ttl");
    const res = await api.post(
      `${API}/enrollment-tokens`,
      {
        ...(groupId ? { groupId } : {}),
        ...(options.tag.length ? { tags: options.tag } : {}),
        ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
      },
      createEnrollmentTokenResponseSchema,
    );
    const now = ctx.now();
    if (options.out === undefined) {
      // The token file is the output (for a pipe or a redirect); with --json it is in the response.
      return { data: res, text: withNewline(res.tokenFile).trimEnd() };
    }
    writePrivateFile(options.out, withNewline(res.tokenFile));
    // With --out the secret goes to the file only, never to stdout.
    const { tokenFile: _secret, ...rest } = res;
    return {
      data: { ...rest, out: options.out },
      text: `enrollment token ${res.id} written to ${options.out} (expires ${formatTime(res.expiresAt, now)})`,
    };
  },
});

export const enrollLsCommand = defineCommand({
  path: ["tokens", "enroll", "ls"],
  summary: "list enrollment tokens (never their secrets)",
  args: [],
  options: { active: { type: "boolean", description: "only tokens that can still be used" }, ...listOptions },
  examples: ["bulwark tokens enroll ls --active"],
  async run(ctx, { options }) {
    const page = await fetchList(
      ctx.api(),
      `${API}/enrollment-tokens`,
      enrollmentTokenSchema,
      { active: options.active ? "true" : undefined },
      options,
    );
    const now = ctx.now();
    const state = (t: (typeof page.items)[number]) =>
      t.revokedAt ? "revoked" : t.usedAt ? "used" : new Date(t.expiresAt) <= now ? "expired" : "active";
    const text = table(
      [
        { header: "ID", value: (t) => t.id },
        { header: "STATE", value: state },
        { header: "GROUP", value: (t) => t.groupId ?? "-" },
        { header: "TAGS", value: (t) => formatList(t.tags) },
        { header: "CREATED", value: (t) => formatTime(t.createdAt, now) },
        { header: "EXPIRES", value: (t) => formatTime(t.expiresAt, now) },
      ],
      page.items,
    );
    return { data: page, text: text + moreHint(page) };
  },
});

export const enrollRevokeCommand = defineCommand({
  path: ["tokens", "enroll", "revoke"],
  summary: "revoke an unused enrollment token",
  args: ["id"],
  options: {},
  examples: ["bulwark tokens enroll revoke 5f0c…"],
  async run(ctx, { args }) {
    await ctx.api().delete(`${API}/enrollment-tokens/${encodeURIComponent(args.id)}`, noContent);
    return { data: { id: args.id, revoked: true }, text: `revoked enrollment token ${args.id}` };
  },
});

export const apiCreateCommand = defineCommand({
  path: ["tokens", "api", "create"],
  summary: "create an API token for scripts (written to a 0600 file or printed once)",
  args: ["name"],
  options: {
    role: { type: "string", description: "a narrower role than yours: operator, helpdesk or auditor" },
    ttl: {
      type: "string",
      valueName: "duration",
      description: "lifetime, e.g. 90d (default: until revoked)",
    },
    out: {
      type: "string",
      valueName: "file",
      description: "write the token here (mode 0600; must not exist)",
    },
  },
  examples: ["bulwark tokens api create nightly-report --role auditor --ttl 90d --out report.token"],
  async run(ctx, { args, options }) {
    const role = enumValue("--role", options.role, roleSchema.options, true);
    const ttlSeconds = options.ttl === undefined ? undefined : parseDuration(options.ttl, "--ttl");
    const res = await ctx
      .api()
      .post(
        `${API}/api-tokens`,
        { name: args.name, ...(role ? { role } : {}), ...(ttlSeconds !== undefined ? { ttlSeconds } : {}) },
        createApiTokenResponseSchema,
      );
    if (options.out === undefined) return { data: res, text: res.token };
    writePrivateFile(options.out, `${res.token}\n`);
    return {
      data: { apiToken: res.apiToken, out: options.out },
      text: `API token ${res.apiToken.name} (${res.apiToken.id}) written to ${options.out}`,
    };
  },
});

export const apiLsCommand = defineCommand({
  path: ["tokens", "api", "ls"],
  summary: "list your API tokens (admins: --all-users or --user for others')",
  args: [],
  options: {
    "all-users": { type: "boolean", description: "every user's tokens (admins)" },
    user: { type: "string", valueName: "user", description: "one user's tokens, by e-mail or ID (admins)" },
    ...listOptions,
  },
  examples: ["bulwark tokens api ls", "bulwark tokens api ls --all-users --json"],
  async run(ctx, { options }) {
    const api = ctx.api();
    const userId = options.user === undefined ? undefined : await resolveUserId(api, options.user);
    const page = await fetchList(
      api,
      `${API}/api-tokens`,
      apiTokenSchema,
      { userId, all: options["all-users"] ? "true" : undefined },
      options,
    );
    const now = ctx.now();
    const text = table(
      [
        { header: "ID", value: (t) => t.id },
        { header: "NAME", value: (t) => t.name },
        { header: "PREFIX", value: (t) => t.prefix },
        { header: "ROLE", value: (t) => t.role ?? "(owner's)" },
        {
          header: "STATE",
          value: (t) =>
            t.revokedAt ? "revoked" : t.expiresAt && new Date(t.expiresAt) <= now ? "expired" : "active",
        },
        { header: "LAST USED", value: (t) => formatTime(t.lastUsedAt, now) },
        { header: "EXPIRES", value: (t) => (t.expiresAt ? formatTime(t.expiresAt, now) : "never") },
      ],
      page.items,
    );
    return { data: page, text: text + moreHint(page) };
  },
});

export const apiRevokeCommand = defineCommand({
  path: ["tokens", "api", "revoke"],
  summary: "revoke an API token",
  args: ["id"],
  options: {},
  examples: ["bulwark tokens api revoke 9a1e…"],
  async run(ctx, { args }) {
    await ctx.api().delete(`${API}/api-tokens/${encodeURIComponent(args.id)}`, noContent);
    return { data: { id: args.id, revoked: true }, text: `revoked API token ${args.id}` };
  },
});
