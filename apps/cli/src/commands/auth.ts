// login, logout, whoami. `login` signs in with e-mail and password (a console session), creates an
// API token for this CLI with that session, ends the session and keeps only the token, in the config
// file (0600). The password never comes from argv: a file, standard input or a no-echo prompt.

import { hostname } from "node:os";
import {
  type ApiToken,
  createApiTokenResponseSchema,
  loginResponseSchema,
  MAX_PASSWORD_LENGTH,
  meResponseSchema,
  roleSchema,
} from "@bulwark/api";
import { BulwarkError } from "@bulwark/errors";
import { ServerError } from "../api-client.js";
import { type CommandContext, defineCommand } from "../command.js";
import { formatTime, keyValues } from "../format.js";
import { readSecretFile } from "../secrets.js";
import { writeCliConfig } from "../settings.js";
import { parseDuration } from "../values.js";
import { API, enumValue, noContent, usage } from "./common.js";

export const passwordOptions = {
  "password-file": { type: "string", valueName: "file", description: "read the password from this file" },
  "password-stdin": { type: "boolean", description: "read the password from standard input" },
} as const;

/** A password from --password-file, --password-stdin or the terminal; `confirm` asks twice. */
export async function readPassword(
  ctx: CommandContext,
  opts: { file: string | undefined; stdin: boolean },
  question: string,
  confirm = false,
): Promise<string> {
  if (opts.file !== undefined && opts.stdin) throw usage("give one of --password-file and --password-stdin");
  let password: string;
  if (opts.file !== undefined) password = readSecretFile(opts.file, "--password-file");
  else if (opts.stdin) {
    if (!ctx.io.readStdin) throw usage("--password-stdin: no standard input");
    password = (await ctx.io.readStdin()).replace(/[\r\n]+$/, "");
  } else if (ctx.io.promptSecret) {
    password = await ctx.io.promptSecret(question);
    if (confirm && (await ctx.io.promptSecret("again: ")) !== password) {
      throw usage("the two passwords differ");
    }
  } else {
    throw usage("no terminal to ask for the password: use --password-file or --password-stdin");
  }
  if (password === "") throw usage("the password is empty");
  if (password.length > MAX_PASSWORD_LENGTH)
    throw usage(`the password is longer than ${MAX_PASSWORD_LENGTH}`);
  return password;
}

/** The session cookies a login answer sets, as one Cookie header (name=value pairs only). */
export function sessionCookie(headers: Headers): string {
  const pairs = headers.getSetCookie().map((c) => c.split(";", 1)[0]!.trim());
  return pairs.filter((p) => p.includes("=")).join("; ");
}

function tokenLine(t: ApiToken, now: Date): string {
  return `${t.name} (bwk_${t.prefix.replace(/^bwk_/, "")}…, id ${t.id}, expires ${t.expiresAt ? formatTime(t.expiresAt, now) : "never"})`;
}

export const loginCommand = defineCommand({
  path: ["login"],
  createsConfig: true,
  summary: "log in with e-mail and password and keep an API token for this CLI in the config file",
  args: [],
  options: {
    email: { type: "string", description: "the account's e-mail (asked when absent)" },
    ...passwordOptions,
    "token-name": {
      type: "string",
      valueName: "name",
      description: "name of the API token (default bulwark-cli@<host>)",
    },
    ttl: {
      type: "string",
      valueName: "duration",
      description: "the token's lifetime, e.g. 90d (default: until revoked)",
    },
    role: { type: "string", description: "a narrower role for the token: operator, helpdesk or auditor" },
  },
  examples: [
    "bulwark --server https://backup.example.com login --email admin@example.com",
    "bulwark login --email admin@example.com --password-file ~/.bulwark-password --ttl 30d",
  ],
  async run(ctx, { options }) {
    const email =
      options.email ?? (ctx.io.promptLine ? (await ctx.io.promptLine("e-mail: ")).trim() : undefined);
    if (!email) throw usage("--email is required when there is no terminal to ask");
    const password = await readPassword(
      ctx,
      { file: options["password-file"], stdin: options["password-stdin"] },
      `password for ${email}: `,
    );
    const role = enumValue("--role", options.role, roleSchema.options, true);
    const ttlSeconds = options.ttl === undefined ? undefined : parseDuration(options.ttl, "--ttl");

    const anonymous = ctx.anonymousApi();
    const login = await anonymous.request("POST", `${API}/auth/login`, {
      schema: loginResponseSchema,
      body: { email, password },
    });
    const cookie = sessionCookie(login.headers);
    if (!cookie) throw new BulwarkError("BULWARK_CLI_BAD_RESPONSE", "the login answer set no session cookie");
    const session = anonymous.withCredentials({ kind: "session", cookie, csrfToken: login.body.csrfToken });
    const created = await session.post(
      `${API}/api-tokens`,
      {
        name: options["token-name"] ?? `bulwark-cli@${hostname()}`,
        ...(role ? { role } : {}),
        ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
      },
      createApiTokenResponseSchema,
    );
    const previous = ctx.settings.config;
    writeCliConfig(ctx.configPath, {
      server: ctx.settings.server,
      token: created.token,
      tokenId: created.apiToken.id,
      user: login.body.user.email,
    });
    const notes: string[] = [];
    // The console session was only needed to mint the token.
    try {
      await session.request("POST", `${API}/auth/logout`, { schema: noContent });
    } catch (err) {
      notes.push(`the login session was not ended: ${(err as Error).message}`);
    }
    // A login replaces the token an earlier login stored: revoke that one on the server too.
    if (previous.tokenId && previous.token && previous.server === ctx.settings.server) {
      try {
        await anonymous
          .withCredentials({ kind: "token", token: created.token })
          .delete(`${API}/api-tokens/${encodeURIComponent(previous.tokenId)}`, noContent);
        notes.push(`revoked the previous CLI token ${previous.tokenId}`);
      } catch (err) {
        if (!(err instanceof ServerError)) throw err;
        notes.push(`the previous CLI token ${previous.tokenId} was not revoked: ${err.code}`);
      }
    }
    for (const note of notes) ctx.io.err(`bulwark: ${note}`);
    const now = ctx.now();
    return {
      // Never the token itself: it is in the config file only.
      data: { user: login.body.user, apiToken: created.apiToken, configPath: ctx.configPath },
      text: [
        `logged in to ${ctx.settings.server} as ${login.body.user.email} (${login.body.user.role})`,
        `API token ${tokenLine(created.apiToken, now)} saved in ${ctx.configPath}`,
      ].join("\n"),
    };
  },
});

export const logoutCommand = defineCommand({
  path: ["logout"],
  summary: "revoke the CLI's API token on the server and remove it from the config file",
  args: [],
  options: {},
  examples: ["bulwark logout"],
  async run(ctx) {
    const { settings } = ctx;
    if (settings.tokenSource !== "config" && settings.tokenSource !== undefined) {
      throw usage(
        `the token comes from ${settings.tokenSource === "token-file" ? "--token-file" : "BULWARK_TOKEN"}, not from login; ` +
          "revoke it with `bulwark tokens api revoke <id>`",
      );
    }
    const { token: _token, tokenId, user: _user, ...rest } = settings.config;
    if (!settings.config.token)
      throw new BulwarkError("BULWARK_CLI_NOT_LOGGED_IN", `no token in ${ctx.configPath}`);
    let revoked = false;
    let note = "";
    if (tokenId) {
      try {
        await ctx.api().delete(`${API}/api-tokens/${encodeURIComponent(tokenId)}`, noContent);
        revoked = true;
      } catch (err) {
        // A token the server no longer accepts (revoked, expired) is still forgotten locally.
        if (!(err instanceof ServerError) || (err.status !== 401 && err.status !== 404)) throw err;
        note = ` (the server no longer accepted it: ${err.code})`;
      }
    } else {
      note = " (its ID is not in the config file, so it was not revoked on the server)";
    }
    writeCliConfig(ctx.configPath, rest);
    return {
      data: { revoked, tokenId: tokenId ?? null, configPath: ctx.configPath },
      text: `${revoked ? "revoked the API token and removed" : "removed"} it from ${ctx.configPath}${note}`,
    };
  },
});

export const whoamiCommand = defineCommand({
  path: ["whoami"],
  summary: "the user and role the CLI acts as",
  args: [],
  options: {},
  examples: ["bulwark whoami --json"],
  async run(ctx) {
    const me = await ctx.api().get(`${API}/auth/me`, meResponseSchema);
    const now = ctx.now();
    return {
      data: me,
      text: keyValues([
        ["user", `${me.user.email} (${me.user.displayName})`],
        ["role", me.role === me.user.role ? me.role : `${me.role} (token; the account is ${me.user.role})`],
        ["via", me.via],
        ["server", ctx.settings.server],
        ["last login", formatTime(me.user.lastLoginAt, now)],
      ]),
    };
  },
});
