import { randomBytes } from "node:crypto";
import { chmod, link, mkdir, open, readFile, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BulwarkError } from "@bulwark/errors";

// The CA key file: the server secret that encrypts the CA's private key in the catalog
// (docs/security.md, "Secrets at rest"). 32 random bytes, base64 on one line, mode 0600. Created
// on first start when absent; several nodes sharing one file (or starting at once) all end up
// reading the same key because the file is published with link(2), which never overwrites.

export const CA_KEY_FILE_NAME = "ca.key";
const KEY_BYTES = 32;

/** The default location when caKeyFile is not configured: `<dataDir>/ca.key`. */
export function defaultCaKeyFile(dataDir: string): string {
  return join(dataDir, CA_KEY_FILE_NAME);
}

function invalid(path: string, why: string): BulwarkError {
  return new BulwarkError("BULWARK_ENROLL_CA_KEY_INVALID", `CA key file ${path}: ${why}`, {
    details: { path },
  });
}

async function readKey(path: string): Promise<Buffer> {
  const text = (await readFile(path, "utf8")).trim();
  const key = Buffer.from(text, "base64");
  if (key.length !== KEY_BYTES || key.toString("base64") !== text) {
    throw invalid(path, `expected ${KEY_BYTES} bytes in base64 on one line`);
  }
  return key;
}

/** Reads the key file, creating it (mode 0600, its directory 0700) if it does not exist. */
export async function loadOrCreateCaKey(path: string): Promise<{ key: Buffer; created: boolean }> {
  try {
    return { key: await readKey(path), created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      if (err instanceof BulwarkError) throw err;
      throw invalid(path, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
    }
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const handle = await open(temp, "wx", 0o600);
  try {
    await handle.writeFile(`${randomBytes(KEY_BYTES).toString("base64")}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await chmod(temp, 0o600); // open()'s mode is filtered by the umask
  let created = true;
  try {
    await link(temp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    created = false; // another process published its key first; use that one
  } finally {
    await unlink(temp);
  }
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return { key: await readKey(path), created };
}
