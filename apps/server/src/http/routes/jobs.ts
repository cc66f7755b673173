// Jobs: list and filter, one, live progress (server-sent events), run a backup now, start a
// restore, cancel, retry, and the per-job log.

import {
  idParamsSchema,
  type Job as JobOut,
  jobListQuerySchema,
  jobLogPageSchema,
  jobLogQuerySchema,
  jobSchema,
  pageQuerySchema,
  pageSchema,
  runBackupRequestSchema,
  startRestoreRequestSchema,
  TERMINAL_JOB_STATES,
} from "@bulwark/api";
import type { JobKind, Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { JOB_KIND_STARTERS } from "../../auth/permissions.js";
import { actorOf, audit, notFound, tenantOf } from "../context.js";
import type { ApiDeps } from "../deps.js";
import type { Job } from "../models.js";
import { cursorDate, decodeCursor, pageOf } from "../pagination.js";
import { principalOf } from "../rbac.js";
import { iso, num } from "../serialize.js";

export function jobOut(j: Job): JobOut {
  return {
    id: j.id,
    kind: j.kind,
    state: j.state,
    agentId: j.agentId,
    policyId: j.policyId,
    requestedById: j.requestedById,
    params: j.params,
    result: j.result,
    progress: j.progress,
    bytesDone: num(j.bytesDone),
    bytesTotal: num(j.bytesTotal),
    attempts: j.attempts,
    maxAttempts: j.maxAttempts,
    errorCode: j.errorCode,
    errorMessage: j.errorMessage,
    createdAt: iso(j.createdAt),
    scheduledFor: iso(j.scheduledFor),
    startedAt: iso(j.startedAt),
    finishedAt: iso(j.finishedAt),
    retryOfId: j.retryOfId,
    cancelRequestedAt: iso(j.cancelRequestedAt),
  };
}

export interface JobEventsOptions {
  /** How often the Job row is read while a client watches. */
  pollMs: number;
  /** A stream ends after this long even if the job is still running; the client reconnects. */
  maxStreamMs: number;
  /** A comment line this often keeps proxies from closing a quiet stream. */
  heartbeatMs: number;
}

/** A second between reads is smooth enough for a progress bar and costs one indexed read per watcher. */
export const DEFAULT_JOB_EVENTS: JobEventsOptions = {
  pollMs: 1_000,
  maxStreamMs: 10 * 60_000,
  heartbeatMs: 15_000,
};

const terminal = new Set<string>(TERMINAL_JOB_STATES);

/** Who may start a job kind may cancel and retry it (auth/permissions.ts, JOB_KIND_STARTERS). */
function assertMayControl(request: FastifyRequest, kind: JobKind, what: "cancel" | "retry"): void {
  const role = principalOf(request).role;
  if (!JOB_KIND_STARTERS[kind].includes(role)) {
    throw new BulwarkError("BULWARK_AUTH_FORBIDDEN", `role ${role} may not ${what} ${kind} jobs`, {
      details: { kind, role },
    });
  }
}

export function jobRoutes(deps: ApiDeps, events: JobEventsOptions): FastifyPluginAsyncZod {
  const { catalog } = deps;
  const find = async (tenantId: string, id: string) => {
    const job = await catalog.job.findFirst({ where: { id, tenantId } });
    if (!job) throw notFound("job", id);
    return job;
  };

  return async (app) => {
    app.get(
      "/jobs",
      {
        schema: {
          tags: ["jobs"],
          summary: "List jobs, newest first",
          querystring: pageQuerySchema.extend(jobListQuerySchema.shape),
          response: { 200: pageSchema(jobSchema) },
        },
      },
      async (request) => {
        const q = request.query;
        const and: Prisma.JobWhereInput[] = [{ tenantId: tenantOf(request) }];
        if (q.kind) and.push({ kind: q.kind });
        if (q.state) and.push({ state: q.state });
        if (q.agentId) and.push({ agentId: q.agentId });
        if (q.policyId) and.push({ policyId: q.policyId });
        if (q.from) and.push({ createdAt: { gte: new Date(q.from) } });
        if (q.to) and.push({ createdAt: { lt: new Date(q.to) } });
        if (q.cursor) {
          const [createdAt, id] = decodeCursor(q.cursor, 2);
          const at = cursorDate(createdAt as string);
          and.push({ OR: [{ createdAt: { lt: at } }, { createdAt: at, id: { lt: String(id) } }] });
        }
        const rows = await catalog.job.findMany({
          where: { AND: and },
          orderBy: [{ createdAt: "desc" }, { id: "desc" }],
          take: q.limit + 1,
        });
        return pageOf(rows, q.limit, (j) => [j.createdAt.toISOString(), j.id], jobOut);
      },
    );

    app.get(
      "/jobs/:id",
      {
        schema: { tags: ["jobs"], summary: "One job", params: idParamsSchema, response: { 200: jobSchema } },
      },
      async (request) => jobOut(await find(tenantOf(request), request.params.id)),
    );

    app.get(
      "/jobs/:id/events",
      {
        schema: {
          tags: ["jobs"],
          summary:
            "Server-sent events: `progress` whenever the job's state or progress changes, `end` when it finishes (then the stream closes)",
          params: idParamsSchema,
        },
      },
      async (request, reply) => {
        const job = await find(tenantOf(request), request.params.id);
        reply.hijack();
        const raw = reply.raw;
        raw.writeHead(200, {
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-store",
          connection: "keep-alive",
          "x-request-id": request.id,
          // Tell nginx-style proxies not to buffer the stream.
          "x-accel-buffering": "no",
        });
        let closed = false;
        let lastSent = "";
        const timers: NodeJS.Timeout[] = [];
        const finish = () => {
          if (closed) return;
          closed = true;
          // clearTimeout also clears intervals (one timer ID space in Node).
          for (const t of timers) clearTimeout(t);
          raw.end();
        };
        request.raw.on("close", finish);
        const send = (event: string, data: unknown) => {
          if (!closed) raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
        };
        const emit = (row: Job): boolean => {
          const progress = {
            id: row.id,
            state: row.state,
            progress: row.progress,
            bytesDone: num(row.bytesDone),
            bytesTotal: num(row.bytesTotal),
            errorCode: row.errorCode,
            errorMessage: row.errorMessage,
          };
          const text = JSON.stringify(progress);
          if (text !== lastSent) {
            lastSent = text;
            send("progress", progress);
          }
          if (terminal.has(row.state)) {
            send("end", { id: row.id, state: row.state });
            finish();
            return true;
          }
          return false;
        };
        if (emit(job)) return;
        timers.push(setInterval(() => !closed && raw.write(": keep-alive\n\n"), events.heartbeatMs));
        timers.push(setTimeout(finish, events.maxStreamMs));
        const poll = async () => {
          if (closed) return;
          try {
            const row = await catalog.job.findUnique({ where: { id: job.id } });
            if (!row) return finish();
            if (emit(row)) return;
          } catch (err) {
            request.log.warn({ err }, "job events: catalog read failed");
          }
          if (!closed) timers.push(setTimeout(poll, events.pollMs));
        };
        timers.push(setTimeout(poll, events.pollMs));
      },
    );

    const backupNow = deps.jobs?.backupNow?.bind(deps.jobs);
    if (backupNow) {
      app.post(
        "/jobs/backup",
        {
          schema: {
            tags: ["jobs"],
            summary: "Back up one volume of a machine now",
            body: runBackupRequestSchema,
            response: { 202: jobSchema },
          },
        },
        async (request, reply) => {
          const tenantId = tenantOf(request);
          const volume = await catalog.volume.findFirst({
            where: { id: request.body.volumeId, agentId: request.body.agentId, agent: { tenantId } },
          });
          if (!volume) throw notFound("volume", request.body.volumeId);
          const { jobId } = await backupNow(actorOf(request), request.body);
          await audit(deps, request, {
            action: "backup.start",
            targetType: "job",
            targetId: jobId,
            details: { agentId: request.body.agentId, volumeId: request.body.volumeId },
          });
          return reply.status(202).send(jobOut(await find(tenantId, jobId)));
        },
      );
    }

    const restore = deps.jobs?.restore?.bind(deps.jobs);
    if (restore) {
      app.post(
        "/jobs/restore",
        {
          schema: {
            tags: ["jobs"],
            summary: "Restore a restore point onto a device or image file of a machine",
            body: startRestoreRequestSchema,
            response: { 202: jobSchema },
          },
        },
        async (request, reply) => {
          const tenantId = tenantOf(request);
          const body = request.body;
          const backup = await catalog.backup.findFirst({ where: { id: body.backupId, tenantId } });
          if (!backup) throw notFound("backup", body.backupId);
          if (body.agentId !== undefined) {
            const agent = await catalog.agent.findFirst({
              where: { id: body.agentId, tenantId },
              select: { id: true },
            });
            if (!agent) throw notFound("agent", body.agentId);
          }
          const { jobId } = await restore(actorOf(request), body);
          await audit(deps, request, {
            action: "restore.volume.start",
            targetType: "job",
            targetId: jobId,
            details: {
              backupId: backup.id,
              agentId: body.agentId ?? backup.agentId,
              targetPath: body.targetPath,
              mode: body.mode,
            },
          });
          return reply.status(202).send(jobOut(await find(tenantId, jobId)));
        },
      );
    }

    app.get(
      "/jobs/:id/log",
      {
        schema: {
          tags: ["jobs"],
          summary:
            "The job's log, oldest first: state changes, attempts, agent milestones, cancel requests, the result. Follow with afterSeq",
          params: idParamsSchema,
          querystring: jobLogQuerySchema,
          response: { 200: jobLogPageSchema },
        },
      },
      async (request) => {
        const job = await find(tenantOf(request), request.params.id);
        const { afterSeq, limit } = request.query;
        const rows = await catalog.jobLogEntry.findMany({
          where: { jobId: job.id, seq: { gt: afterSeq } },
          orderBy: { seq: "asc" },
          take: limit + 1,
        });
        const items = rows.slice(0, limit).map((e) => ({
          seq: e.seq,
          at: e.at.toISOString(),
          level: e.level,
          event: e.event as never,
          code: e.code,
          message: e.message,
          data: (e.data ?? null) as Record<string, unknown> | null,
        }));
        return {
          items,
          nextAfterSeq: rows.length > limit ? items.at(-1)!.seq : null,
          jobState: job.state,
        };
      },
    );

    const cancel = deps.jobs?.cancel?.bind(deps.jobs);
    if (cancel) {
      app.post(
        "/jobs/:id/cancel",
        {
          schema: {
            tags: ["jobs"],
            summary:
              "Cancel a job: a waiting one at once, a running one once its agent or worker has stopped (cancelRequestedAt is set meanwhile). Idempotent; 409 for a job that finished otherwise",
            params: idParamsSchema,
            response: { 200: jobSchema },
          },
        },
        async (request) => {
          const job = await find(tenantOf(request), request.params.id);
          assertMayControl(request, job.kind, "cancel");
          await cancel(actorOf(request), job.id);
          // Audited after the fact: a refused cancel (409) changed nothing.
          await audit(deps, request, {
            action: "job.cancel",
            targetType: "job",
            targetId: job.id,
            details: { kind: job.kind, stateBefore: job.state, agentId: job.agentId },
          });
          return jobOut(await find(job.tenantId, job.id));
        },
      );
    }

    const retry = deps.jobs?.retry?.bind(deps.jobs);
    if (retry) {
      app.post(
        "/jobs/:id/retry",
        {
          schema: {
            tags: ["jobs"],
            summary:
              "Retry a failed, cancelled or missed job: a new job with the same parameters (retryOfId names the old one); a job is retried once",
            params: idParamsSchema,
            response: { 202: jobSchema },
          },
        },
        async (request, reply) => {
          const job = await find(tenantOf(request), request.params.id);
          assertMayControl(request, job.kind, "retry");
          const { jobId } = await retry(actorOf(request), job.id);
          await audit(deps, request, {
            action: "job.retry",
            targetType: "job",
            targetId: jobId,
            details: { kind: job.kind, retryOf: job.id, agentId: job.agentId },
          });
          return reply.status(202).send(jobOut(await find(job.tenantId, jobId)));
        },
      );
    }
  };
}
