import { open } from "node:fs/promises";
import { userInfo } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Catalog } from "@bulwark/catalog";
import type { ServerConfig } from "@bulwark/config";
import { BulwarkError } from "@bulwark/errors";
import { loadAgentListenerTls } from "../grpc/tls.js";
import { prepareServerPki } from "../pki/server-pki.js";
import {
  type Actor,
  DEFAULT_TOKEN_TTL_S,
  listEnrollmentTokens,
  mintEnrollmentToken,
  revokeEnrollmentToken,
  TAG_PATTERN,
} from "./tokens.js";

// `bulwark-server token create|list|revoke`: enrollment tokens without the REST API, for the
// first machines of a new installation. The token itself is written only into the token file
// (mode 0600) and never printed.

export const TOKEN_USAGE = `usage: bulwark-server token create [--tenant SLUG] [--group NAME] [--tag TAG]... [--ttl 1h] [--out FILE]
       bulwark-server token list [--tenant SLUG]
       bulwark-server token revoke ID [--tenant SLUG]`;

const TTL_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** "90s", "15m", "1h", "7d" → seconds. */
export function parseTtl(text: string): number {
  const m = /^(\d+)([smhd])$/.exec(text);
  if (!m) throw usage(`--ttl ${text}: expected a number and a unit s, m, h or d (e.g. 1h)`);
  return Number(m[1]) * TTL_UNITS[m[2]!]!;
}

function usage(message: string): BulwarkError {
  return new BulwarkError("BULWARK_GENERAL_VALIDATION", `${message}\n${TOKEN_USAGE}`);
}

function cliActor(): Actor {
  let name = "bulwark-server token";
  try {
    name = `${name} (${userInfo().username})`;
  } catch {
    // no passwd entry: the command name alone
  }
  return { type: "SYSTEM", name };
}

/** Writes the token file without following or replacing an existing file. */
async function writeTokenFile(path: string, text: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "wx", 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw usage(
      `cannot create ${path}: ${code === "EEXIST" ? "the file exists (tokens are never overwritten)" : code}`,
    );
  }
  try {
    await handle.chmod(0o600);
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function tokenCommand(
  args: string[],
  config: ServerConfig,
  catalog: Catalog,
  now: () => Date = () => new Date(),
): Promise<string> {
  const [verb, ...rest] = args;
  let parsed: ReturnType<typeof parse>;
  const parse = () =>
    parseArgs({
      args: rest,
      allowPositionals: verb === "revoke",
      options: {
        tenant: { type: "string", default: "default" },
        group: { type: "string" },
        tag: { type: "string", multiple: true },
        ttl: { type: "string" },
        out: { type: "string" },
      },
      strict: true,
    });
  try {
    parsed = parse();
  } catch (err) {
    throw usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  const tenantSlug = values.tenant ?? "default";
  switch (verb) {
    case "create": {
      const ttlSeconds = values.ttl ? parseTtl(values.ttl) : DEFAULT_TOKEN_TTL_S;
      for (const tag of values.tag ?? []) {
        if (!TAG_PATTERN.test(tag)) throw usage(`--tag ${tag}: letters, digits, '.', '_', ':', '-' only`);
      }
      // A fresh installation has no tenant yet; its first token creates it (as repo init does).
      const tenant = await catalog.tenant.upsert({
        where: { slug: tenantSlug },
        create: { slug: tenantSlug, name: tenantSlug },
        update: {},
      });
      const notes: string[] = [];
      let groupId: string | undefined;
      if (values.group) {
        const existing = await catalog.group.findUnique({
          where: { tenantId_name: { tenantId: tenant.id, name: values.group } },
        });
        groupId = existing?.id;
        if (!groupId) {
          groupId = (await catalog.group.create({ data: { tenantId: tenant.id, name: values.group } })).id;
          notes.push(`created group ${values.group}`);
        }
      }
      const pki = await prepareServerPki({
        config,
        catalog,
        ...(config.grpcTlsCertFile ? { fileTls: loadAgentListenerTls(config)! } : {}),
      });
      const minted = await mintEnrollmentToken(
        catalog,
        {
          tenantId: tenant.id,
          ttlSeconds,
          ...(groupId ? { groupId } : {}),
          ...(values.tag ? { tags: values.tag } : {}),
        },
        { endpoint: pki.endpoint, now, actor: cliActor() },
      );
      const out = resolve(values.out ?? `bulwark-enroll-${minted.id.slice(0, 8)}.token`);
      await writeTokenFile(out, minted.tokenFile);
      return [
        ...notes,
        `enrollment token ${minted.id} written to ${out} (mode 0600)`,
        `expires ${minted.expiresAt.toISOString()}; single use; enroll address ${pki.endpoint.enrollAddress}, CA sha256 ${pki.endpoint.caFingerprint}`,
        `on the machine: bulwark-agent enroll --token-file ${out}`,
      ].join("\n");
    }
    case "list": {
      const tenant = await catalog.tenant.findUnique({ where: { slug: tenantSlug } });
      if (!tenant) return "no tokens";
      const tokens = await listEnrollmentTokens(catalog, { tenantId: tenant.id }, { now });
      return (
        tokens
          .map(
            (t) =>
              `${t.id} ${t.state.padEnd(7)} expires ${t.expiresAt.toISOString()}${t.usedByAgent ? ` agent ${t.usedByAgent}` : ""}${t.tags.length ? ` tags ${t.tags.join(",")}` : ""}`,
          )
          .join("\n") || "no tokens"
      );
    }
    case "revoke": {
      const [id] = positionals;
      if (!id || positionals.length > 1) throw usage("token revoke takes one token ID");
      const tenant = await catalog.tenant.findUnique({ where: { slug: tenantSlug } });
      if (!tenant) {
        throw new BulwarkError(
          "BULWARK_ENROLL_TOKEN_NOT_FOUND",
          `no enrollment token ${id} in tenant ${tenantSlug}`,
        );
      }
      const token = await revokeEnrollmentToken(
        catalog,
        { tenantId: tenant.id, tokenId: id },
        { now, actor: cliActor() },
      );
      return `enrollment token ${token.id} is ${token.state}`;
    }
    default:
      throw usage(verb ? `unknown token command ${verb}` : "token needs a command");
  }
}
