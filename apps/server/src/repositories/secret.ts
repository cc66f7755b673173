import { readFileSync } from "node:fs";
import { type ServerConfig, serverEnv } from "@bulwark/config";
import { BulwarkError } from "@bulwark/errors";
import type { KeySecret } from "@bulwark/repository";

/** The secret that opens the server's repositories, from the file the configuration names. */
export function loadRepositorySecret(config: ServerConfig): KeySecret | undefined {
  const key =
    config.repositoryPassphraseFile !== undefined ? "repositoryPassphraseFile" : "repositoryKeyFile";
  const path = config[key];
  if (path === undefined) return undefined;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new BulwarkError(
      "BULWARK_CONFIG_INVALID",
      `${serverEnv[key]} / ${key}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { details: { key, path } },
    );
  }
  // A passphrase file's trailing newline is stripped by the repository (echo pw > file).
  return key === "repositoryPassphraseFile" ? { passphrase: bytes.toString("utf8") } : { keyFile: bytes };
}
