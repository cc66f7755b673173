import { parseArgs } from "node:util";
import type { Catalog } from "@bulwark/catalog";
import type { ServerConfig } from "@bulwark/config";
import { BulwarkError } from "@bulwark/errors";
import { initRepository } from "./repositories/registry.js";
import { loadRepositorySecret } from "./repositories/secret.js";

// `bulwark-server repo init`: the one-time creation of a LOCAL repository and its catalog row,
// with the secret the server is configured to open repositories with.

export const REPO_USAGE =
  "usage: bulwark-server repo init --location DIR [--name NAME] [--tenant SLUG] [--chunk-size BYTES]";

export async function repoCommand(args: string[], config: ServerConfig, catalog: Catalog): Promise<string> {
  const [verb, ...rest] = args;
  if (verb !== "init") throw new BulwarkError("BULWARK_GENERAL_VALIDATION", REPO_USAGE);
  let values: { location?: string; name?: string; tenant?: string; "chunk-size"?: string };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        location: { type: "string" },
        name: { type: "string", default: "default" },
        tenant: { type: "string", default: "default" },
        "chunk-size": { type: "string" },
      },
      strict: true,
    }));
  } catch (err) {
    throw new BulwarkError("BULWARK_GENERAL_VALIDATION", `${(err as Error).message}\n${REPO_USAGE}`);
  }
  if (!values.location)
    throw new BulwarkError("BULWARK_GENERAL_VALIDATION", `--location is required\n${REPO_USAGE}`);
  const secret = loadRepositorySecret(config);
  if (!secret) {
    throw new BulwarkError(
      "BULWARK_CONFIG_INVALID",
      "set repositoryPassphraseFile (BULWARK_REPOSITORY_PASSPHRASE_FILE) or repositoryKeyFile (BULWARK_REPOSITORY_KEY_FILE) first: the server opens the repository with it",
    );
  }
  const chunkSize = values["chunk-size"] === undefined ? undefined : Number(values["chunk-size"]);
  // A fresh install has no tenant yet; the first repository creates the one it belongs to.
  const tenantSlug = values.tenant ?? "default";
  await catalog.tenant.upsert({
    where: { slug: tenantSlug },
    create: { slug: tenantSlug, name: tenantSlug },
    update: {},
  });
  const created = await initRepository({
    catalog,
    secret,
    tenantSlug,
    name: values.name ?? "default",
    location: values.location,
    ...(chunkSize !== undefined ? { chunkSize } : {}),
  });
  return `repository ${values.name ?? "default"} created at ${values.location} (catalog id ${created.id}, repository id ${created.repoUuid})`;
}
