// What many commands share: list paging flags, following `nextCursor`, and turning the names a person
// types (hostname, group name, policy name, e-mail) into the IDs the API takes.

import {
  type Agent,
  agentSchema,
  type Group,
  groupSchema,
  MAX_PAGE_SIZE,
  type Policy,
  pageSchema,
  policySchema,
  type User,
  userSchema,
} from "@bulwark/api";
import { BulwarkError } from "@bulwark/errors";
import { z } from "zod";
import { type ApiClient, type QueryValue, ServerError } from "../api-client.js";
import type { OptionSpec } from "../command.js";

export const API = "/api/v1";

export const listOptions = {
  limit: {
    type: "string",
    valueName: "n",
    description: `at most this many rows per page (1-${MAX_PAGE_SIZE})`,
  },
  cursor: { type: "string", description: "continue after the page that answered this nextCursor" },
  all: { type: "boolean", description: "follow every page (JSON: one merged list)" },
} as const satisfies Record<string, OptionSpec>;

export const yesOption = {
  yes: { type: "boolean", description: "confirm: this cannot be undone" },
} as const satisfies Record<string, OptionSpec>;

/** Refuses an irreversible action unless the user said --yes (no interactive question: scripts hang on those). */
export function requireYes(yes: boolean, what: string): void {
  if (!yes) throw new BulwarkError("BULWARK_CLI_USAGE", `${what} cannot be undone: add --yes to confirm`);
}

export function parseLimit(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE_SIZE) {
    throw new BulwarkError(
      "BULWARK_CLI_USAGE",
      `--limit ${JSON.stringify(value)}: expected 1 to ${MAX_PAGE_SIZE}`,
    );
  }
  return n;
}

/** Guards against a server that keeps answering a cursor (a bug there must not hang the CLI). */
const MAX_PAGES = 10_000;

export interface ListPage<T> {
  items: T[];
  nextCursor: string | null;
}

/** One page, or with --all every page merged (nextCursor null). */
export async function fetchList<S extends z.ZodType>(
  api: ApiClient,
  path: string,
  item: S,
  query: Record<string, QueryValue>,
  paging: { limit?: string | undefined; cursor?: string | undefined; all?: boolean },
): Promise<ListPage<z.output<S>>> {
  const schema = pageSchema(item);
  const limit = parseLimit(paging.limit);
  if (!paging.all) {
    return api.get(path, schema, { ...query, limit, cursor: paging.cursor });
  }
  const items: z.output<S>[] = [];
  let cursor = paging.cursor;
  for (let page = 0; page < MAX_PAGES; page++) {
    const res = await api.get(path, schema, { ...query, limit: limit ?? MAX_PAGE_SIZE, cursor });
    items.push(...res.items);
    if (res.nextCursor === null) return { items, nextCursor: null };
    cursor = res.nextCursor;
  }
  throw new BulwarkError("BULWARK_CLI_BAD_RESPONSE", `${path}: more than ${MAX_PAGES} pages`);
}

/** Text after a table when more rows exist. */
export function moreHint(page: ListPage<unknown>): string {
  return page.nextCursor === null ? "" : `\n(more rows: --cursor ${page.nextCursor}, or --all)`;
}

const uuid = z.uuid();
export function isId(value: string): boolean {
  return uuid.safeParse(value).success;
}

function ambiguous(kind: string, value: string, ids: string[]): BulwarkError {
  return new BulwarkError(
    "BULWARK_CLI_USAGE",
    `${kind} ${JSON.stringify(value)} matches ${ids.length}: ${ids.join(", ")}; use the ID`,
  );
}

function notFound(kind: string, value: string): BulwarkError {
  // The server's answer (its list) says there is no such thing: the same code and exit code as a 404.
  return new ServerError("BULWARK_API_NOT_FOUND", `no ${kind} ${JSON.stringify(value)}`, 404, undefined);
}

/** Looks a name up through a list filter and keeps exact matches only (search filters are substrings). */
async function byName<T extends { id: string }>(
  api: ApiClient,
  kind: string,
  value: string,
  path: string,
  item: z.ZodType<T>,
  query: Record<string, QueryValue>,
  name: (row: T) => string,
): Promise<T> {
  const page = await fetchList(api, path, item, query, { all: true });
  const exact = page.items.filter((row) => name(row).toLowerCase() === value.toLowerCase());
  if (exact.length === 1) return exact[0]!;
  if (exact.length === 0) throw notFound(kind, value);
  throw ambiguous(
    kind,
    value,
    exact.map((r) => r.id),
  );
}

/** An agent by ID or hostname. */
export async function resolveAgent(api: ApiClient, value: string): Promise<Agent | { id: string }> {
  if (isId(value)) return { id: value };
  return byName(api, "machine", value, `${API}/agents`, agentSchema, { search: value }, (a) => a.hostname);
}

export async function resolveAgentId(api: ApiClient, value: string): Promise<string> {
  return (await resolveAgent(api, value)).id;
}

export async function resolveGroupId(api: ApiClient, value: string): Promise<string> {
  if (isId(value)) return value;
  const group: Group = await byName(
    api,
    "group",
    value,
    `${API}/groups`,
    groupSchema,
    { search: value },
    (g) => g.name,
  );
  return group.id;
}

export async function resolvePolicyId(api: ApiClient, value: string): Promise<string> {
  if (isId(value)) return value;
  const policy: Policy = await byName(
    api,
    "policy",
    value,
    `${API}/policies`,
    policySchema,
    { search: value },
    (p) => p.name,
  );
  return policy.id;
}

export async function resolveUserId(api: ApiClient, value: string): Promise<string> {
  if (isId(value)) return value;
  const user: User = await byName(
    api,
    "user",
    value,
    `${API}/users`,
    userSchema,
    { search: value },
    (u) => u.email,
  );
  return user.id;
}

/** A 204 answer has no body; its "schema" accepts exactly that. */
export const noContent = z.undefined();

export function usage(message: string): BulwarkError {
  return new BulwarkError("BULWARK_CLI_USAGE", message);
}

/** The one allowed value of an enum flag, case-insensitive ("--role admin" → "ADMIN"). */
export function enumValue<const T extends readonly string[]>(
  flag: string,
  value: string | undefined,
  allowed: T,
  upper = false,
): T[number] | undefined {
  if (value === undefined) return undefined;
  const wanted = upper ? value.toUpperCase() : value.toLowerCase();
  const found = allowed.find((a) => a === wanted);
  if (!found) throw usage(`${flag} ${JSON.stringify(value)}: expected one of ${allowed.join(", ")}`);
  return found;
}
