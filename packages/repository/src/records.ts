import { BulwarkError } from "@bulwark/errors";
import { RECORD_ID } from "./ids.js";
import { geometry } from "./index-tree.js";

/** Restore-point and session records (spec, "Restore points and sessions"): JSON inside blobs. */
export interface RestorePoint {
  format: "bulwark-restore-point";
  version: 1;
  id: string;
  name: string;
  createdAt: string;
  volumeSize: number;
  chunkSize: number;
  fanout: number;
  /** Root node ID, 64 hex; all zeros for an all-zero volume. */
  root: string;
  rootLevel: number;
  base: string | null;
  stats: { chunks: number; zeroChunks: number; newChunks: number; newStoredBytes: number };
  labels: Record<string, string>;
}

export interface SessionRecord {
  format: "bulwark-ingest-session";
  version: 1;
  id: string;
  startedAt: string;
  host: string;
  pid: number;
  /** Index roots this session inherits subtrees from, with the geometry needed to walk them. */
  bases: { root: string; volumeSize: number; chunkSize: number; fanout: number }[];
}

function fail(what: string, why: string): never {
  throw new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: ${why}`, {
    details: { object: what, reason: why },
  });
}

function parseJson(plain: Buffer, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(plain.toString("utf8"));
  } catch {
    fail(what, "record is not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(what, "record is not an object");
  return v as Record<string, unknown>;
}

function checkVersion(v: Record<string, unknown>, format: string, what: string): void {
  if (v.format !== format) fail(what, `record format is ${String(v.format)}, expected ${format}`);
  if (v.version !== 1) {
    throw new BulwarkError(
      "BULWARK_REPO_UNSUPPORTED_VERSION",
      `${what}: record version ${String(v.version)} is unknown`,
    );
  }
}

const int = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;

export function parsePoint(plain: Buffer, expectedId: string, what: string): RestorePoint {
  const v = parseJson(plain, what);
  checkVersion(v, "bulwark-restore-point", what);
  if (v.id !== expectedId) fail(what, "record id does not match its name");
  if (
    typeof v.name !== "string" ||
    typeof v.createdAt !== "string" ||
    Number.isNaN(Date.parse(v.createdAt))
  ) {
    fail(what, "name or createdAt invalid");
  }
  for (const k of ["volumeSize", "chunkSize", "fanout", "rootLevel"])
    if (!int(v[k])) fail(what, `${k} invalid`);
  try {
    const g = geometry(v.volumeSize as number, v.chunkSize as number, v.fanout as number);
    if (g.rootLevel !== v.rootLevel) fail(what, "rootLevel disagrees with the geometry");
  } catch (err) {
    if (err instanceof BulwarkError && err.code === "BULWARK_REPO_CORRUPT") throw err;
    fail(what, "geometry invalid");
  }
  if (typeof v.root !== "string" || !/^[0-9a-f]{64}$/.test(v.root)) fail(what, "root invalid");
  if (v.base !== null && (typeof v.base !== "string" || !RECORD_ID.test(v.base))) fail(what, "base invalid");
  const s = v.stats as Record<string, unknown> | undefined;
  if (!s || !["chunks", "zeroChunks", "newChunks", "newStoredBytes"].every((k) => int(s[k])))
    fail(what, "stats invalid");
  const labels = v.labels;
  if (
    typeof labels !== "object" ||
    labels === null ||
    Array.isArray(labels) ||
    !Object.values(labels).every((x) => typeof x === "string")
  ) {
    fail(what, "labels invalid");
  }
  return v as unknown as RestorePoint;
}

export function parseSession(plain: Buffer, expectedId: string, what: string): SessionRecord {
  const v = parseJson(plain, what);
  checkVersion(v, "bulwark-ingest-session", what);
  if (v.id !== expectedId) fail(what, "record id does not match its name");
  const bases = v.bases;
  if (
    !Array.isArray(bases) ||
    !bases.every((b: Record<string, unknown>) => {
      if (typeof b?.root !== "string" || !/^[0-9a-f]{64}$/.test(b.root)) return false;
      try {
        geometry(b.volumeSize as number, b.chunkSize as number, b.fanout as number);
        return true;
      } catch {
        return false;
      }
    })
  ) {
    fail(what, "bases invalid");
  }
  return v as unknown as SessionRecord;
}
