import { BulwarkError } from "@bulwark/errors";

/** PATH_MAX on Linux; longer paths are rejected before any read. */
export const MAX_PATH_BYTES = 4096;

export function invalidPath(message: string, path: string): BulwarkError {
  return new BulwarkError("BULWARK_FS_INVALID_PATH", message, { details: { path } });
}

/**
 * The components of an absolute `/`-separated path. Repeated and trailing slashes are tolerated;
 * "." and ".." are refused rather than interpreted, so a path can never climb out of where it points.
 */
export function splitPath(path: string): string[] {
  if (typeof path !== "string" || !path.startsWith("/"))
    throw invalidPath("path must start with /", String(path));
  if (Buffer.byteLength(path, "utf8") > MAX_PATH_BYTES)
    throw invalidPath("path is too long", path.slice(0, 256));
  if (path.includes("\0")) throw invalidPath("path contains NUL", path);
  const parts = path.split("/").filter((p) => p !== "");
  if (parts.some((p) => p === "." || p === "..")) throw invalidPath("path contains . or ..", path);
  return parts;
}

export function joinPath(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

export function normalisePath(path: string): string {
  return `/${splitPath(path).join("/")}`;
}
