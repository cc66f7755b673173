// jobs ls | show | watch | run-backup | cancel | retry | log. `watch` follows the job's server-sent
// events (GET /api/v1/jobs/:id/events) until it ends: a progress line redrawn in place on a
// terminal, a line per change otherwise, or one JSON document per event with --json. `log
// --follow` polls the job's log (GET /api/v1/jobs/:id/log?afterSeq=) until the job has ended.

import {
  agentDetailSchema,
  type Job,
  type JobLogEntry,
  type JobProgressEvent,
  jobKindSchema,
  jobLogPageSchema,
  jobProgressEventSchema,
  jobSchema,
  jobStateSchema,
  TERMINAL_JOB_STATES,
} from "@bulwark/api";
import { BulwarkError } from "@bulwark/errors";
import { z } from "zod";
import type { ApiClient } from "../api-client.js";
import { type CommandContext, defineCommand } from "../command.js";
import { EXIT } from "../exit-codes.js";
import { formatBytes, formatTime, keyValues, table } from "../format.js";
import { readServerSentEvents } from "../sse.js";
import { parseSince } from "../values.js";
import { API, enumValue, fetchList, isId, listOptions, moreHint, resolveAgentId, usage } from "./common.js";

const terminal = new Set<string>(TERMINAL_JOB_STATES);

/** Percent done: from bytes when the total is known, else the job's own progress (a 0-1 fraction). */
export function percentDone(j: Pick<Job, "progress" | "bytesDone" | "bytesTotal">): string {
  if (j.bytesTotal !== null && j.bytesTotal > 0) return `${((100 * j.bytesDone) / j.bytesTotal).toFixed(1)}%`;
  const p = j.progress <= 1 ? j.progress * 100 : j.progress;
  return `${p.toFixed(1)}%`;
}

export function progressLine(e: JobProgressEvent): string {
  const bytes =
    e.bytesTotal !== null
      ? `${formatBytes(e.bytesDone)} / ${formatBytes(e.bytesTotal)}`
      : formatBytes(e.bytesDone);
  const error = e.errorCode ? `  ${e.errorCode}: ${e.errorMessage ?? ""}`.trimEnd() : "";
  return `job ${e.id} ${e.state} ${percentDone(e)} ${bytes}${error}`;
}

function toProgress(job: Job): JobProgressEvent {
  return {
    id: job.id,
    state: job.state,
    progress: job.progress,
    bytesDone: job.bytesDone,
    bytesTotal: job.bytesTotal,
    errorCode: job.errorCode,
    errorMessage: job.errorMessage,
  };
}

const endEventSchema = z.object({ id: z.string(), state: jobStateSchema });

/** Pause before re-opening a stream the server closed before the job ended (its stream has a maximum life). */
const RECONNECT_DELAY_MS = 1_000;

/**
 * Follows a job until it is in a final state and returns that state. Events are validated with the
 * contract; a stream that closes early is re-opened after the job's row is checked.
 */
export async function watchJob(
  ctx: CommandContext,
  api: ApiClient,
  jobId: string,
): Promise<JobProgressEvent> {
  const { io } = ctx;
  let last: JobProgressEvent | undefined;
  let drawn = false;
  const show = (e: JobProgressEvent) => {
    last = e;
    if (ctx.json) io.out(JSON.stringify({ event: "progress", ...e }));
    else if (io.rewriteLine) {
      io.rewriteLine(progressLine(e));
      drawn = true;
    } else io.out(progressLine(e));
  };
  const controller = new AbortController();
  try {
    for (;;) {
      const stream = await api.openEventStream(`${API}/jobs/${jobId}/events`, controller.signal);
      for await (const event of readServerSentEvents(stream)) {
        let data: unknown;
        try {
          data = JSON.parse(event.data);
        } catch {
          throw new BulwarkError("BULWARK_CLI_BAD_RESPONSE", `job events: ${event.event} data is not JSON`);
        }
        if (event.event === "progress") {
          const parsed = jobProgressEventSchema.safeParse(data);
          if (!parsed.success)
            throw new BulwarkError(
              "BULWARK_CLI_BAD_RESPONSE",
              "job events: a progress event does not match the API contract",
            );
          show(parsed.data);
        } else if (event.event === "end") {
          const parsed = endEventSchema.safeParse(data);
          if (!parsed.success)
            throw new BulwarkError(
              "BULWARK_CLI_BAD_RESPONSE",
              "job events: the end event does not match the API contract",
            );
          if (ctx.json) io.out(JSON.stringify({ event: "end", ...parsed.data }));
          if (last && last.state === parsed.data.state) return last;
          // The final progress event was coalesced away: read the row for the error fields.
          return toProgress(await api.get(`${API}/jobs/${jobId}`, jobSchema));
        }
      }
      // Closed without an end: the job may have ended between polls, or the stream hit its maximum life.
      const job = await api.get(`${API}/jobs/${jobId}`, jobSchema);
      if (terminal.has(job.state)) {
        const final = toProgress(job);
        if (!last || JSON.stringify(last) !== JSON.stringify(final)) show(final);
        if (ctx.json) io.out(JSON.stringify({ event: "end", id: job.id, state: job.state }));
        return final;
      }
      await new Promise((r) => setTimeout(r, RECONNECT_DELAY_MS));
    }
  } finally {
    controller.abort();
    if (drawn) io.rewriteLine?.("\n");
  }
}

/** The exit of a watched job: 0 when it succeeded, else BULWARK_CLI_JOB_FAILED (exit 5). */
export function finished(
  ctx: CommandContext,
  final: Pick<JobProgressEvent, "id" | "state" | "errorCode" | "errorMessage">,
): number {
  if (final.state === "SUCCEEDED") return EXIT.OK;
  const why = final.errorCode ? `: ${final.errorCode}: ${final.errorMessage ?? ""}`.trimEnd() : "";
  ctx.io.err(`bulwark: BULWARK_CLI_JOB_FAILED: job ${final.id} ended ${final.state}${why}`);
  return EXIT.FAILED;
}

export const jobsLsCommand = defineCommand({
  path: ["jobs", "ls"],
  summary: "list jobs, newest first",
  args: [],
  options: {
    kind: { type: "string", description: `one kind: ${jobKindSchema.options.join(", ").toLowerCase()}` },
    state: { type: "string", description: `one state: ${jobStateSchema.options.join(", ").toLowerCase()}` },
    agent: { type: "string", valueName: "agent", description: "one machine (hostname or ID)" },
    since: { type: "string", valueName: "when", description: "created at or after: 24h, 7d or an ISO time" },
    ...listOptions,
  },
  examples: ["bulwark jobs ls --state running", "bulwark jobs ls --agent web-01 --since 24h --json"],
  async run(ctx, { options }) {
    const api = ctx.api();
    const now = ctx.now();
    const page = await fetchList(
      api,
      `${API}/jobs`,
      jobSchema,
      {
        kind: enumValue("--kind", options.kind, jobKindSchema.options, true),
        state: enumValue("--state", options.state, jobStateSchema.options, true),
        agentId: options.agent === undefined ? undefined : await resolveAgentId(api, options.agent),
        from:
          options.since === undefined ? undefined : parseSince(options.since, "--since", now).toISOString(),
      },
      options,
    );
    const text = table(
      [
        { header: "ID", value: (j: Job) => j.id },
        { header: "KIND", value: (j) => j.kind },
        { header: "STATE", value: (j) => j.state },
        { header: "DONE", value: percentDone, align: "right" },
        { header: "AGENT", value: (j) => j.agentId ?? "-" },
        { header: "CREATED", value: (j) => formatTime(j.createdAt, now) },
        { header: "ERROR", value: (j) => j.errorCode ?? "" },
      ],
      page.items,
    );
    return { data: page, text: text + moreHint(page) };
  },
});

export const jobsShowCommand = defineCommand({
  path: ["jobs", "show"],
  summary: "one job: state, progress, times, error",
  args: ["id"],
  options: {},
  examples: ["bulwark jobs show 41d2…"],
  async run(ctx, { args }) {
    const j = await ctx.api().get(`${API}/jobs/${encodeURIComponent(args.id)}`, jobSchema);
    const now = ctx.now();
    return {
      data: j,
      text: keyValues([
        ["id", j.id],
        ["kind", j.kind],
        ["state", j.state],
        [
          "progress",
          `${percentDone(j)} (${formatBytes(j.bytesDone)}${j.bytesTotal !== null ? ` of ${formatBytes(j.bytesTotal)}` : ""})`,
        ],
        ["machine", j.agentId ?? "-"],
        ["policy", j.policyId ?? "-"],
        ["attempts", `${j.attempts} of ${j.maxAttempts}`],
        ["created", formatTime(j.createdAt, now)],
        ["scheduled for", formatTime(j.scheduledFor, now)],
        ["started", formatTime(j.startedAt, now)],
        ["finished", formatTime(j.finishedAt, now)],
        ["error", j.errorCode ? `${j.errorCode}: ${j.errorMessage ?? ""}` : "-"],
        ["params", JSON.stringify(j.params)],
        ...(j.result !== null ? ([["result", JSON.stringify(j.result)]] as [string, string][]) : []),
      ]),
    };
  },
});

export const jobsWatchCommand = defineCommand({
  path: ["jobs", "watch"],
  summary: "follow a job's progress until it ends (exit 0 succeeded, 5 failed or cancelled)",
  args: ["id"],
  options: {},
  examples: ["bulwark jobs watch 41d2…", "bulwark jobs watch 41d2… --json   # one JSON document per event"],
  async run(ctx, { args }) {
    if (!isId(args.id)) throw usage(`jobs watch: ${JSON.stringify(args.id)} is not a job ID`);
    const final = await watchJob(ctx, ctx.api(), args.id);
    return { streamed: true, exitCode: finished(ctx, final) };
  },
});

export const jobsRunBackupCommand = defineCommand({
  path: ["jobs", "run-backup"],
  summary: "back up one volume of a machine now",
  args: ["agent", "volume"],
  options: { wait: { type: "boolean", description: "follow the job until it ends, as `jobs watch` does" } },
  examples: ["bulwark jobs run-backup web-01 /", "bulwark jobs run-backup web-01 /dev/sda1 --wait"],
  async run(ctx, { args, options }) {
    const api = ctx.api();
    const agentId = await resolveAgentId(api, args.agent);
    const agent = await api.get(`${API}/agents/${agentId}`, agentDetailSchema);
    // The volume by ID, mount point, device path or key, among the machine's present volumes.
    const matches = agent.volumes.filter(
      (v) => !v.gone && [v.id, v.mountPoint, v.devicePath, v.key].includes(args.volume),
    );
    if (matches.length !== 1) {
      const known = agent.volumes.filter((v) => !v.gone).map((v) => v.mountPoint ?? v.devicePath);
      throw usage(
        `${agent.hostname} has ${matches.length === 0 ? "no" : "more than one"} volume ${JSON.stringify(args.volume)} (volumes: ${known.join(", ") || "none"})`,
      );
    }
    const job = await api.post(`${API}/jobs/backup`, { agentId, volumeId: matches[0]!.id }, jobSchema);
    if (!options.wait)
      return { data: job, text: `queued backup job ${job.id} (bulwark jobs watch ${job.id})` };
    if (ctx.json) ctx.io.out(JSON.stringify({ event: "created", ...job }));
    else ctx.io.out(`queued backup job ${job.id}`);
    const final = await watchJob(ctx, api, job.id);
    return { streamed: true, exitCode: finished(ctx, final) };
  },
});

export const jobsCancelCommand = defineCommand({
  path: ["jobs", "cancel"],
  summary: "cancel a queued or running job (a running one stops once its machine or worker has stopped it)",
  args: ["id"],
  options: {
    wait: { type: "boolean", description: "follow the job until it has stopped, as `jobs watch` does" },
  },
  examples: ["bulwark jobs cancel 41d2…", "bulwark jobs cancel 41d2… --wait --json"],
  async run(ctx, { args, options }) {
    if (!isId(args.id)) throw usage(`jobs cancel: ${JSON.stringify(args.id)} is not a job ID`);
    const api = ctx.api();
    const j = await api.post(`${API}/jobs/${args.id}/cancel`, {}, jobSchema);
    const stopping = j.state === "RUNNING" || j.state === "QUEUED";
    if (!options.wait || !stopping) {
      return {
        data: j,
        text: stopping
          ? `cancel requested: job ${j.id} is stopping (bulwark jobs watch ${j.id})`
          : `job ${j.id} is ${j.state}`,
      };
    }
    if (ctx.json) ctx.io.out(JSON.stringify({ event: "cancel-requested", ...j }));
    else ctx.io.out(`cancel requested: job ${j.id} is stopping`);
    const final = await watchJob(ctx, api, j.id);
    // Stopped as asked: success for this command. A backup that committed first ends SUCCEEDED.
    if (final.state === "CANCELLED" || final.state === "SUCCEEDED")
      return { streamed: true, exitCode: EXIT.OK };
    return { streamed: true, exitCode: finished(ctx, final) };
  },
});

export const jobsRetryCommand = defineCommand({
  path: ["jobs", "retry"],
  summary: "run a failed, cancelled or missed job again as a new job with the same parameters",
  args: ["id"],
  options: {
    wait: { type: "boolean", description: "follow the new job until it ends, as `jobs watch` does" },
  },
  examples: ["bulwark jobs retry 41d2…", "bulwark jobs retry 41d2… --wait"],
  async run(ctx, { args, options }) {
    if (!isId(args.id)) throw usage(`jobs retry: ${JSON.stringify(args.id)} is not a job ID`);
    const api = ctx.api();
    const j = await api.post(`${API}/jobs/${args.id}/retry`, {}, jobSchema);
    if (!options.wait)
      return { data: j, text: `queued job ${j.id}, a retry of ${args.id} (bulwark jobs watch ${j.id})` };
    if (ctx.json) ctx.io.out(JSON.stringify({ event: "created", ...j }));
    else ctx.io.out(`queued job ${j.id}, a retry of ${args.id}`);
    const final = await watchJob(ctx, api, j.id);
    return { streamed: true, exitCode: finished(ctx, final) };
  },
});

/** One log line for people: time, level, message and code. */
export function logLine(e: JobLogEntry): string {
  const code = e.code ? `  [${e.code}]` : "";
  return `${e.at}  ${e.level.padEnd(5)}  ${e.message}${code}`;
}

/** How often `jobs log --follow` asks for new lines. */
const LOG_POLL_MS = 1_000;

export const jobsLogCommand = defineCommand({
  path: ["jobs", "log"],
  summary: "a job's log: state changes, attempts, machine milestones, cancel requests, the result",
  args: ["id"],
  options: {
    follow: {
      type: "boolean",
      short: "f",
      description: "keep printing new lines until the job has ended (with --json: one JSON line each)",
    },
  },
  examples: ["bulwark jobs log 41d2…", "bulwark jobs log 41d2… --follow", "bulwark jobs log 41d2… --json"],
  async run(ctx, { args, options }) {
    if (!isId(args.id)) throw usage(`jobs log: ${JSON.stringify(args.id)} is not a job ID`);
    const api = ctx.api();
    const path = `${API}/jobs/${args.id}/log`;
    let after = 0;
    if (!options.follow) {
      const items: JobLogEntry[] = [];
      let state: string;
      for (;;) {
        const page = await api.get(path, jobLogPageSchema, { afterSeq: after, limit: 200 });
        items.push(...page.items);
        state = page.jobState;
        if (page.nextAfterSeq === null) break;
        after = page.nextAfterSeq;
      }
      return {
        data: { items, jobState: state },
        text: items.length ? items.map(logLine).join("\n") : `job ${args.id} has no log lines yet`,
      };
    }
    for (;;) {
      const page = await api.get(path, jobLogPageSchema, { afterSeq: after, limit: 200 });
      for (const e of page.items) ctx.io.out(ctx.json ? JSON.stringify(e) : logLine(e));
      if (page.items.length) after = page.items.at(-1)!.seq;
      if (page.nextAfterSeq !== null) continue;
      if (terminal.has(page.jobState) && page.items.length === 0) {
        return { streamed: true, exitCode: EXIT.OK };
      }
      await new Promise((r) => setTimeout(r, LOG_POLL_MS));
    }
  },
});
