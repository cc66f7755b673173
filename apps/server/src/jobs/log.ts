import type { JobLogEvent } from "@bulwark/api";
import type { Catalog, JobLogLevel, Prisma } from "@bulwark/catalog";
import type { Logger } from "pino";

// The per-job log people read (docs/jobs.md, "Job log"): one row per event in job_log_entries,
// numbered per job by Job.logSeq. The seq is taken and the line inserted in one statement, so
// writers on several nodes (the worker, the sink of the node holding the agent's stream, the REST
// node that took a cancel) never collide. Writing a log line never fails a job: errors are logged.
// Lines carry codes, counters and names, never parameters that could hold secrets (hooks, keys).

/** Lines a job keeps; the last one says the log is full. */
export const JOB_LOG_LIMIT = 500;
/** Lines always written after the limit (final state, cancel request, retry): a full log still ends. */
const ESSENTIAL_EXTRA = 20;
const ESSENTIAL: ReadonlySet<JobLogEvent> = new Set(["finished", "cancel_requested", "retried"]);
/** Messages and string values are cut here: a log line is for reading, not a dump. */
const MAX_TEXT = 2_000;

export interface JobLogLine {
  level: JobLogLevel;
  event: JobLogEvent;
  code?: string | null;
  message: string;
  data?: Record<string, unknown> | null;
}

function clip(text: string): string {
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text;
}

async function insert(catalog: Catalog, jobId: string, line: JobLogLine, below: number, at: Date) {
  const data = line.data ? (JSON.stringify(line.data) as unknown as Prisma.InputJsonValue) : null;
  const rows = await catalog.$queryRaw<{ seq: number }[]>`
    WITH s AS (
      UPDATE "jobs" SET "logSeq" = "logSeq" + 1
      WHERE "id" = ${jobId}::uuid AND "logSeq" < ${below}
      RETURNING "logSeq"
    )
    INSERT INTO "job_log_entries" ("jobId", "seq", "at", "level", "event", "code", "message", "data")
    SELECT ${jobId}::uuid, s."logSeq", ${at}, ${line.level}::"JobLogLevel", ${line.event},
           ${line.code ?? null}, ${clip(line.message)}, ${data}::jsonb
    FROM s
    RETURNING "seq"`;
  return rows[0]?.seq;
}

/** Appends a line; returns its seq, or undefined when the log is full (or the write failed). */
export async function appendJobLog(
  catalog: Catalog,
  jobId: string,
  line: JobLogLine,
  opts: { now?: Date; log?: Logger } = {},
): Promise<number | undefined> {
  const at = opts.now ?? new Date();
  try {
    if (ESSENTIAL.has(line.event))
      return await insert(catalog, jobId, line, JOB_LOG_LIMIT + ESSENTIAL_EXTRA, at);
    const seq = await insert(catalog, jobId, line, JOB_LOG_LIMIT - 1, at);
    if (seq !== undefined) return seq;
    // Exactly one writer gets the last ordinary slot and says why the log stops here.
    await insert(
      catalog,
      jobId,
      {
        level: "WARN",
        event: "log_full",
        message: `the log reached ${JOB_LOG_LIMIT} lines; only the final result is written from now on`,
      },
      JOB_LOG_LIMIT,
      at,
    );
    return undefined;
  } catch (err) {
    opts.log?.warn({ jobId, event: line.event, err: (err as Error).message }, "job log write failed");
    return undefined;
  }
}

/** A short, secret-free summary of a final Job row for its `finished` line. */
export function finishedSummary(row: {
  kind: string;
  state: string;
  attempts: number;
  bytesDone: bigint;
  bytesTotal: bigint | null;
  result: Prisma.JsonValue | null;
}): Record<string, unknown> {
  const out: Record<string, unknown> = {
    state: row.state,
    attempts: row.attempts,
    bytesDone: Number(row.bytesDone),
    ...(row.bytesTotal !== null ? { bytesTotal: Number(row.bytesTotal) } : {}),
  };
  const r = (row.result ?? {}) as Record<string, unknown>;
  if (typeof r !== "object" || Array.isArray(r)) return out;
  const pick = (src: unknown, keys: string[]) => {
    if (!src || typeof src !== "object") return undefined;
    const o = src as Record<string, unknown>;
    const picked = Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, o[k]]));
    return Object.keys(picked).length ? picked : undefined;
  };
  if (typeof r.restorePointId === "string") out.restorePointId = r.restorePointId;
  const capture = pick(r.capture, [
    "method",
    "bytesRead",
    "bytesSent",
    "bytesSentPlain",
    "chunksTotal",
    "chunksZero",
    "chunksSkipped",
  ]);
  if (capture) out.capture = capture;
  const restore = pick(r.restore, [
    "volumeBytes",
    "bytesReceived",
    "chunksReceived",
    "chunksUnchanged",
    "chunksZero",
    "durationMs",
  ]);
  if (restore) out.restore = restore;
  if (row.kind === "PRUNE") {
    if (Array.isArray(r.kept)) out.kept = r.kept.length;
    if (Array.isArray(r.deleted)) out.deleted = r.deleted.length;
  }
  if (row.kind === "GC") {
    const gc = pick(r, ["points", "marked", "scanned", "deleted", "deletedBytes", "keptYoung"]);
    if (gc) out.gc = gc;
  }
  if (row.kind === "VERIFY") {
    const v = pick(r, ["ok", "points", "nodes", "chunks"]);
    if (v) out.verify = { ...v, problems: Array.isArray(r.problems) ? r.problems.length : undefined };
  }
  return out;
}
