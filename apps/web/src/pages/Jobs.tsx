// Jobs: a live list (refreshed while something runs) with progress bars, filters and pages kept
// in the address, one job's details and log, retry and cancel.
import { jobKindSchema, jobStateSchema } from "@bulwark/api";
import { useCallback, useEffect, useState } from "react";
import { z } from "zod";
import { api } from "../api/endpoints";
import { href, navigate } from "../router";
import { useCan } from "../session";
import { formatBytes, formatTime } from "../ui/format";
import { JOB_TABLE_HEAD, JobRow } from "../ui/jobs";
import { Empty, ErrorBox, Show, useAction, useLoad } from "../ui/load";
import { dayToIso, Pager, ResetFilters, useListParams } from "../ui/paging";
import { isTerminal, JobLiveView, useLiveJob } from "../ui/progress";

/** How often the list refreshes while a job in it is queued or running. */
const LIST_REFRESH_MS = 3_000;

const JOB_FILTERS = ["state", "kind", "agent", "from", "to"] as const;

export function JobsPage({ selected }: { selected?: string }) {
  const params = useListParams(JOB_FILTERS);
  const { state, kind, agent, from, to } = params.filters;
  const { cursor, limit } = params;
  const [tick, setTick] = useState(0);
  const refreshList = useCallback(() => setTick((n) => n + 1), []);
  const [jobs, reload] = useLoad(
    (signal) =>
      api.jobs(
        {
          state: state || undefined,
          kind: kind || undefined,
          agentId: agent || undefined,
          from: dayToIso(from, "from"),
          to: dayToIso(to, "to", true),
          limit,
          cursor,
        },
        signal,
      ),
    [state, kind, agent, from, to, limit, cursor, tick],
  );
  const [machines] = useLoad((signal) => api.agents({}, signal), []);
  const active = jobs.state === "ok" && jobs.data.items.some((j) => !isTerminal(j.state));
  useEffect(() => {
    if (!active) return;
    const t = setTimeout(() => setTick((n) => n + 1), LIST_REFRESH_MS);
    return () => clearTimeout(t);
  }, [active]);
  const machineOptions = machines.state === "ok" ? machines.data.items : [];

  return (
    <>
      <h1>Jobs</h1>
      {selected && <JobDetail id={selected} onChanged={refreshList} />}
      <form className="filters" aria-label="Filter jobs" onSubmit={(e) => e.preventDefault()}>
        <label>
          State
          <select value={state} onChange={(e) => params.setFilters({ state: e.target.value })}>
            <option value="">any</option>
            {jobStateSchema.options.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Kind
          <select value={kind} onChange={(e) => params.setFilters({ kind: e.target.value })}>
            <option value="">any</option>
            {jobKindSchema.options.map((k) => (
              <option key={k}>{k}</option>
            ))}
          </select>
        </label>
        <label>
          Machine
          <select value={agent} onChange={(e) => params.setFilters({ agent: e.target.value })}>
            <option value="">any</option>
            {agent && !machineOptions.some((m) => m.id === agent) && (
              <option value={agent}>the machine in the link</option>
            )}
            {machineOptions.map((m) => (
              <option key={m.id} value={m.id}>
                {m.hostname}
              </option>
            ))}
          </select>
        </label>
        <label>
          Created from
          <input type="date" value={from} onChange={(e) => params.setFilters({ from: e.target.value })} />
        </label>
        <label>
          to (inclusive)
          <input type="date" value={to} onChange={(e) => params.setFilters({ to: e.target.value })} />
        </label>
        <ResetFilters params={params} />
      </form>
      <Show loaded={jobs} what="jobs" onRetry={reload}>
        {(page) => (
          <>
            {page.items.length === 0 ? (
              <Empty>{params.filtered ? "No jobs match these filters." : "No jobs yet."}</Empty>
            ) : (
              <div className="table-wrap" aria-busy={jobs.state === "ok" && jobs.stale}>
                <table>
                  <caption className="visually-hidden">Jobs, newest first</caption>
                  {JOB_TABLE_HEAD}
                  <tbody>
                    {page.items.map((j) => (
                      <JobRow key={j.id} job={j} />
                    ))}
                  </tbody>
                </table>
              </div>
            )}
            <Pager params={params} count={page.items.length} nextCursor={page.nextCursor} what="jobs" />
          </>
        )}
      </Show>
    </>
  );
}

/** A backup job's params name the volume, so a failed one can run again. */
const backupParamsSchema = z.object({ volumeId: z.uuid() });

function JobDetail({ id, onChanged }: { id: string; onChanged: () => void }) {
  const mayCancel = useCan("cancelJob");
  const mayRun = useCan("runBackup");
  const [job, reload] = useLoad((signal) => api.job(id, signal), [id]);
  const live = useLiveJob(id);
  const liveState = live.event?.state;
  // When the live stream says the job ended, read it again for its times, result and actions.
  useEffect(() => {
    if (liveState && isTerminal(liveState)) {
      reload();
      onChanged();
    }
  }, [liveState, reload, onChanged]);
  const action = useAction();
  return (
    <section className="card" aria-labelledby="job-heading">
      <Show loaded={job} what="the job" onRetry={reload}>
        {(j) => {
          const retryParams = backupParamsSchema.safeParse(j.params);
          return (
            <>
              <h2 id="job-heading">
                {j.kind.toLowerCase()} job <code>{j.id.slice(0, 8)}</code>
              </h2>
              <JobLiveView live={live} initial={j} />
              <dl>
                <dt>Machine</dt>
                <dd>{j.agentId ? <a href={href(`/machines/${j.agentId}`)}>open machine</a> : "—"}</dd>
                <dt>Created</dt>
                <dd>{formatTime(j.createdAt)}</dd>
                <dt>Started</dt>
                <dd>{formatTime(j.startedAt)}</dd>
                <dt>Finished</dt>
                <dd>{formatTime(j.finishedAt)}</dd>
                <dt>Attempts</dt>
                <dd>
                  {j.attempts} of {j.maxAttempts}
                </dd>
                {j.bytesTotal !== null && (
                  <>
                    <dt>Data</dt>
                    <dd>
                      {formatBytes(j.bytesDone)} of {formatBytes(j.bytesTotal)}
                    </dd>
                  </>
                )}
              </dl>
              <details>
                <summary>Log (parameters and result)</summary>
                <pre className="log">
                  {JSON.stringify({ params: j.params, result: j.result, error: j.errorMessage }, null, 2)}
                </pre>
              </details>
              <div className="actions">
                {mayCancel && !isTerminal(j.state) && (
                  <button
                    type="button"
                    disabled={action.busy}
                    onClick={() =>
                      void action
                        .run(() => api.cancelJob(j.id))
                        .then((r) => {
                          if (r) {
                            reload();
                            onChanged();
                          }
                        })
                    }
                  >
                    Cancel job
                  </button>
                )}
                {mayRun &&
                  j.kind === "BACKUP" &&
                  (j.state === "FAILED" || j.state === "MISSED" || j.state === "CANCELLED") &&
                  j.agentId &&
                  retryParams.success && (
                    <button
                      type="button"
                      disabled={action.busy}
                      onClick={() => {
                        const agentId = j.agentId;
                        if (!agentId) return;
                        void action
                          .run(() => api.runBackup(agentId, retryParams.data.volumeId))
                          .then((r) => {
                            if (r) {
                              onChanged();
                              navigate(`/jobs/${r.id}`);
                            }
                          });
                      }}
                    >
                      Retry backup
                    </button>
                  )}
              </div>
              {action.error && <ErrorBox message={action.error} />}
            </>
          );
        }}
      </Show>
    </section>
  );
}
