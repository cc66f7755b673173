import { createHash } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";

/**
 * Plain, checksummed text files (config, key files): they must be readable before any key is
 * known. Layout: "<magic> v<version>\n<json>\nsha256 <hex of everything before this line>\n".
 */
export function encodePlainFile(magic: string, version: number, value: unknown): Buffer {
  const body = `${magic} v${version}\n${JSON.stringify(value, null, 2)}\n`;
  const sum = createHash("sha256").update(body).digest("hex");
  return Buffer.from(`${body}sha256 ${sum}\n`, "utf8");
}

export function decodePlainFile(
  bytes: Buffer,
  magic: string,
  version: number,
  what: string,
): Record<string, unknown> {
  const text = bytes.toString("utf8");
  const firstNl = text.indexOf("\n");
  const header = firstNl < 0 ? text : text.slice(0, firstNl);
  const m = /^(\S+) v(\d+)$/.exec(header);
  if (!m || m[1] !== magic) {
    throw new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: not a ${magic} file`, { details: { what } });
  }
  if (Number(m[2]) !== version) {
    throw new BulwarkError("BULWARK_REPO_UNSUPPORTED_VERSION", `${what}: format version ${m[2]} is unknown`, {
      details: { what, version: Number(m[2]) },
    });
  }
  const sumAt = text.lastIndexOf("sha256 ");
  const trailer = /^sha256 ([0-9a-f]{64})\n$/.exec(text.slice(sumAt));
  const body = text.slice(0, sumAt);
  if (sumAt <= firstNl || !trailer || createHash("sha256").update(body).digest("hex") !== trailer[1]) {
    throw new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: checksum mismatch`, { details: { what } });
  }
  try {
    const value: unknown = JSON.parse(body.slice(firstNl + 1));
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not an object");
    return value as Record<string, unknown>;
  } catch (cause) {
    throw new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: body is not a JSON object`, {
      details: { what },
      cause,
    });
  }
}
