// Secrets (passwords, tokens) reach the CLI from a file, standard input or a no-echo prompt, never
// from argv. Files that hand out secrets (enrollment token files) are written 0600.

import { chmodSync, closeSync, fsyncSync, openSync, readFileSync, writeSync } from "node:fs";
import { BulwarkError } from "@bulwark/errors";

/** Reads a one-line secret from a file; trailing newlines (from `echo` or editors) are dropped. */
export function readSecretFile(path: string, flag: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new BulwarkError(
      "BULWARK_CLI_FILE",
      `${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const secret = text.replace(/[\r\n]+$/, "");
  if (secret === "") throw new BulwarkError("BULWARK_CLI_FILE", `${flag} ${path}: the file is empty`);
  return secret;
}

/**
 * Writes a file only its owner can read. `exclusive` refuses to replace an existing file, so a
 * mistyped --out cannot overwrite something else.
 */
export function writePrivateFile(path: string, content: string, exclusive = true): void {
  try {
    const fd = openSync(path, exclusive ? "wx" : "w", 0o600);
    try {
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(path, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "EEXIST" ? "the file exists (remove it first)" : (code ?? (err as Error).message);
    throw new BulwarkError("BULWARK_CLI_FILE", `cannot write ${path}: ${why}`);
  }
}
