// users ls | create | disable | enable | role: console and API accounts (admins only).

import { roleSchema, userSchema } from "@bulwark/api";
import { defineCommand } from "../command.js";
import { formatTime, table } from "../format.js";
import { passwordOptions, readPassword } from "./auth.js";
import { API, enumValue, fetchList, listOptions, moreHint, resolveUserId, usage } from "./common.js";

export const usersLsCommand = defineCommand({
  path: ["users", "ls"],
  summary: "list users",
  args: [],
  options: {
    role: { type: "string", description: "only this role: admin, operator, helpdesk, auditor" },
    search: { type: "string", valueName: "text", description: "e-mail or name contains this text" },
    ...listOptions,
  },
  examples: ["bulwark users ls --role helpdesk"],
  async run(ctx, { options }) {
    const role = enumValue("--role", options.role, roleSchema.options, true);
    const page = await fetchList(
      ctx.api(),
      `${API}/users`,
      userSchema,
      { role, search: options.search },
      options,
    );
    const now = ctx.now();
    const text = table(
      [
        { header: "ID", value: (u) => u.id },
        { header: "EMAIL", value: (u) => u.email },
        { header: "NAME", value: (u) => u.displayName },
        { header: "ROLE", value: (u) => u.role },
        { header: "STATE", value: (u) => (u.disabled ? "disabled" : "active") },
        { header: "LAST LOGIN", value: (u) => formatTime(u.lastLoginAt, now) },
      ],
      page.items,
    );
    return { data: page, text: text + moreHint(page) };
  },
});

export const usersCreateCommand = defineCommand({
  path: ["users", "create"],
  summary: "create a user; the password comes from a file, stdin or the terminal",
  args: [],
  options: {
    email: { type: "string", description: "the login e-mail (required)" },
    name: { type: "string", description: "display name (default: the e-mail)" },
    role: { type: "string", description: "admin, operator, helpdesk or auditor (required)" },
    ...passwordOptions,
  },
  examples: [
    "bulwark users create --email ann@example.com --name Ann --role helpdesk --password-file ann.pw",
  ],
  async run(ctx, { options }) {
    if (!options.email) throw usage("users create: --email is required");
    const role = enumValue("--role", options.role, roleSchema.options, true);
    if (!role) throw usage("users create: --role is required");
    const password = await readPassword(
      ctx,
      { file: options["password-file"], stdin: options["password-stdin"] },
      `password for ${options.email}: `,
      true,
    );
    const u = await ctx
      .api()
      .post(
        `${API}/users`,
        { email: options.email, displayName: options.name ?? options.email, role, password },
        userSchema,
      );
    return { data: u, text: `created ${u.role} ${u.email} (${u.id})` };
  },
});

function stateCommand(word: "disable" | "enable") {
  return defineCommand({
    path: ["users", word],
    summary:
      word === "disable"
        ? "stop a user from logging in (sessions and tokens stop working)"
        : "let a disabled user log in again",
    args: ["user"],
    options: {},
    examples: [`bulwark users ${word} ann@example.com`],
    async run(ctx, { args }) {
      const api = ctx.api();
      const id = await resolveUserId(api, args.user);
      const u = await api.patch(`${API}/users/${id}`, { disabled: word === "disable" }, userSchema);
      return { data: u, text: `${u.email} is ${u.disabled ? "disabled" : "active"}` };
    },
  });
}
export const usersDisableCommand = stateCommand("disable");
export const usersEnableCommand = stateCommand("enable");

export const usersRoleCommand = defineCommand({
  path: ["users", "role"],
  summary: "change a user's role",
  args: ["user", "role"],
  options: {},
  examples: ["bulwark users role ann@example.com operator"],
  async run(ctx, { args }) {
    const role = enumValue("role", args.role, roleSchema.options, true)!;
    const api = ctx.api();
    const id = await resolveUserId(api, args.user);
    const u = await api.patch(`${API}/users/${id}`, { role }, userSchema);
    return { data: u, text: `${u.email} is now ${u.role}` };
  },
});
