// Jobs: a live list (refreshed while something runs) with progress bars, filters and pages kept
// in the address, one job's details and log, retry and cancel.
import { type JobLogEntry, jobKindSchema, jobStateSchema, RETRYABLE_JOB_STATES } from "@bulwark/api";
import { useCallback, useEffect, useRef, useState } from "react";
import { errorMessage } from "../api/client";
import { api } from "../api/endpoints";
import { canControlJob } from "../roles";
import { href, navigate, useRoute } from "../router";
import { useMe } from "../session";
import { formatBytes, formatClock, formatTime } from "../ui/format";
import { JOB_COLUMNS, JobRow, jobKindLabel } from "../ui/jobs";
import { ChoiceFilter, DayRangeFilter, ListTable, PagedList } from "../ui/lists";
import { Empty, ErrorBox, Show, useAction, useLoad, Waiting } from "../ui/load";
import { dayToIso, ResetFilters, useListParams } from "../ui/paging";
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
  const keep = Object.fromEntries(useRoute().query.entries());

  return (
    <>
      <h1>Jobs</h1>
      {selected && <JobDetail key={selected} id={selected} onChanged={refreshList} />}
      <form className="filters" aria-label="Filter jobs" onSubmit={(e) => e.preventDefault()}>
        <ChoiceFilter label="State" params={params} name="state" options={jobStateSchema.options} />
        <ChoiceFilter label="Kind" params={params} name="kind" options={jobKindSchema.options} />
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
        <DayRangeFilter params={params} fromLabel="Created from" toPrefix="Created" />
        <ResetFilters params={params} />
      </form>
      <PagedList
        loaded={jobs}
        onRetry={reload}
        params={params}
        what="jobs"
        empty={params.filtered ? "No jobs match these filters." : "No jobs yet."}
      >
        {(items) => (
          <ListTable
            caption="Jobs, newest first"
            columns={JOB_COLUMNS}
            busy={jobs.state === "ok" && jobs.stale}
          >
            {items.map((j) => (
              <JobRow key={j.id} job={j} keep={keep} />
            ))}
          </ListTable>
        )}
      </PagedList>
    </>
  );
}

function JobDetail({ id, onChanged }: { id: string; onChanged: () => void }) {
  const me = useMe();
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
  const [confirming, setConfirming] = useState(false);
  return (
    <section className="card" aria-labelledby="job-heading">
      <Show loaded={job} what="the job" onRetry={reload}>
        {(j) => {
          const state = liveState && isTerminal(liveState) ? liveState : j.state;
          const mayControl = canControlJob(me.role, j.kind);
          const mayCancel = mayControl && !isTerminal(state) && j.cancelRequestedAt === null;
          const mayRetry = mayControl && (RETRYABLE_JOB_STATES as readonly string[]).includes(state);
          return (
            <>
              <h2 id="job-heading">
                {jobKindLabel(j.kind)} job <code>{j.id.slice(0, 8)}</code>
              </h2>
              <JobLiveView live={live} initial={j} />
              {j.cancelRequestedAt && !isTerminal(state) && (
                <p role="status" className="meta">
                  Cancel requested {formatTime(j.cancelRequestedAt)}: waiting for the machine to stop the job.
                </p>
              )}
              <dl>
                <dt>Machine</dt>
                <dd>{j.agentId ? <a href={href(`/machines/${j.agentId}`)}>open machine</a> : "—"}</dd>
                {j.retryOfId && (
                  <>
                    <dt>Retry of</dt>
                    <dd>
                      <a href={href(`/jobs/${j.retryOfId}`)}>job {j.retryOfId.slice(0, 8)}</a>
                    </dd>
                  </>
                )}
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
              {(mayCancel || mayRetry) && (
                <div className="actions">
                  {mayCancel && !confirming && (
                    <button type="button" disabled={action.busy} onClick={() => setConfirming(true)}>
                      Cancel job
                    </button>
                  )}
                  {mayCancel && confirming && (
                    <fieldset className="danger confirm">
                      <legend>Cancel this {jobKindLabel(j.kind)} job?</legend>
                      <p>
                        {state === "RUNNING"
                          ? "The machine stops the job; a cancelled backup leaves no restore point."
                          : "The job will not run."}
                      </p>
                      <button
                        type="button"
                        disabled={action.busy}
                        onClick={() =>
                          void action
                            .run(() => api.cancelJob(j.id))
                            .then((r) => {
                              setConfirming(false);
                              if (r) {
                                reload();
                                onChanged();
                              }
                            })
                        }
                      >
                        Yes, cancel the job
                      </button>
                      <button type="button" className="secondary" onClick={() => setConfirming(false)}>
                        Keep it
                      </button>
                    </fieldset>
                  )}
                  {mayRetry && (
                    <button
                      type="button"
                      disabled={action.busy}
                      onClick={() =>
                        void action
                          .run(() => api.retryJob(j.id))
                          .then((r) => {
                            if (r) {
                              onChanged();
                              navigate(`/jobs/${r.id}`);
                            }
                          })
                      }
                    >
                      Retry {jobKindLabel(j.kind)}
                    </button>
                  )}
                </div>
              )}
              {action.error && <ErrorBox message={action.error} />}
              <JobLog jobId={j.id} />
              <details>
                <summary>Parameters and result</summary>
                <pre className="log">{JSON.stringify({ params: j.params, result: j.result }, null, 2)}</pre>
              </details>
            </>
          );
        }}
      </Show>
    </section>
  );
}

/** While the job runs, the log is read again this often for new lines. */
const LOG_FOLLOW_MS = 2_000;
/** After a failed read, the next try comes this much later (the error stays shown meanwhile). */
const LOG_RETRY_MS = 10_000;

type LogState = { lines: JobLogEntry[]; loaded: boolean; error?: string };

/**
 * A job's log, oldest first: every page up to the end, then new lines while the job is not
 * final (the API's afterSeq cursor), stopping once the job is final and nothing new came.
 */
export function useJobLog(jobId: string): LogState & { retry: () => void } {
  const [log, setLog] = useState<LogState>({ lines: [], loaded: false });
  const [attempt, setAttempt] = useState(0);
  const seen = useRef({ jobId, after: 0 });
  // biome-ignore lint/correctness/useExhaustiveDependencies: `attempt` restarts reading after an error
  useEffect(() => {
    if (seen.current.jobId !== jobId) {
      seen.current = { jobId, after: 0 };
      setLog({ lines: [], loaded: false });
    }
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = async () => {
      try {
        const page = await api.jobLog(jobId, seen.current.after, controller.signal);
        if (controller.signal.aborted) return;
        const last = page.items[page.items.length - 1];
        if (last) seen.current.after = last.seq;
        setLog((l) => ({ lines: page.items.length ? [...l.lines, ...page.items] : l.lines, loaded: true }));
        if (page.nextAfterSeq !== null) timer = setTimeout(read, 0);
        else if (!isTerminal(page.jobState) || page.items.length > 0) timer = setTimeout(read, LOG_FOLLOW_MS);
      } catch (err) {
        if (controller.signal.aborted) return;
        setLog((l) => ({ ...l, error: errorMessage(err) }));
        timer = setTimeout(() => setAttempt((n) => n + 1), LOG_RETRY_MS);
      }
    };
    setLog((l) => (l.error ? { ...l, error: undefined } : l));
    void read();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [jobId, attempt]);
  return { ...log, retry: () => setAttempt((n) => n + 1) };
}

const LEVEL_CLASS = { INFO: "", WARN: "warn", ERROR: "problem" } as const;

function JobLog({ jobId }: { jobId: string }) {
  const log = useJobLog(jobId);
  return (
    <section aria-labelledby="job-log-heading">
      <h3 id="job-log-heading">Log</h3>
      {log.error && <ErrorBox message={`Could not read the log: ${log.error}`} onRetry={log.retry} />}
      {!log.loaded && !log.error && <Waiting what="the log" />}
      {log.loaded && log.lines.length === 0 && <Empty>No log lines yet.</Empty>}
      {log.lines.length > 0 && (
        <ol className="job-log" role="log" aria-label="Job log, oldest first">
          {log.lines.map((l) => (
            <li key={l.seq} className={LEVEL_CLASS[l.level]}>
              <time dateTime={l.at}>{formatClock(l.at)}</time>
              <span className="level">{l.level}</span>
              <span>
                {l.message}
                {l.code && <code> {l.code}</code>}
                {l.event === "retried" && typeof l.data?.retryJobId === "string" && (
                  <>
                    {" "}
                    <a href={href(`/jobs/${l.data.retryJobId}`)}>open the retry</a>
                  </>
                )}
              </span>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
