// One machine: its volumes and their recovery-point status, the policy in effect, its restore
// points on a timeline, and its jobs.
import { type AgentDetail, type Backup, jobKindSchema, jobStateSchema } from "@bulwark/api";
import { useState } from "react";
import { api } from "../api/endpoints";
import { href, navigate } from "../router";
import { useCan } from "../session";
import { formatAgo, formatBytes, formatTime } from "../ui/format";
import { JOB_COLUMNS, JobRow } from "../ui/jobs";
import { ChoiceFilter, DayRangeFilter, ListTable, PagedList } from "../ui/lists";
import { Empty, ErrorBox, Show, useAction, useLoad } from "../ui/load";
import { dayToIso, ResetFilters, useListParams } from "../ui/paging";

const RPO_TEXT = {
  ok: "on schedule",
  late: "recovery point missed",
  none: "no restore point yet",
  unscheduled: "no policy applies",
} as const;

const POINT_FILTERS = ["volume", "from", "to"] as const;
const JOB_FILTERS = ["state", "kind"] as const;

export function MachinePage({ id }: { id: string }) {
  const mayRun = useCan("runBackup");
  const mayRestore = useCan("restore");
  const mayGroup = useCan("manageGroups");
  const [agent, reload] = useLoad((signal) => api.agent(id, signal), [id]);
  const points = useListParams(POINT_FILTERS, "points-");
  const jobList = useListParams(JOB_FILTERS, "jobs-");
  const [backups, reloadBackups] = useLoad(
    (signal) =>
      api.backups(
        {
          agentId: id,
          volumeId: points.filters.volume || undefined,
          from: dayToIso(points.filters.from, "points-from"),
          to: dayToIso(points.filters.to, "points-to", true),
          limit: points.limit,
          cursor: points.cursor,
        },
        signal,
      ),
    [id, points.filters.volume, points.filters.from, points.filters.to, points.limit, points.cursor],
  );
  const [jobs, reloadJobs] = useLoad(
    (signal) =>
      api.jobs(
        {
          agentId: id,
          state: jobList.filters.state || undefined,
          kind: jobList.filters.kind || undefined,
          limit: jobList.limit,
          cursor: jobList.cursor,
        },
        signal,
      ),
    [id, jobList.filters.state, jobList.filters.kind, jobList.limit, jobList.cursor],
  );
  const action = useAction();

  return (
    <Show loaded={agent} what="the machine" onRetry={reload}>
      {(a) => (
        <>
          <p className="breadcrumb">
            <a href={href("/machines")}>Machines</a> /
          </p>
          <h1>{a.hostname}</h1>
          <p className="meta">
            {a.status === "REVOKED" ? "Revoked" : a.online ? "Online" : "Offline"} · {a.os}{" "}
            {a.osVersion ?? ""} · agent {a.agentVersion} · last seen {formatAgo(a.lastSeenAt)}
            {a.groups.length > 0 && ` · groups: ${a.groups.map((g) => g.name).join(", ")}`}
            {a.tags.length > 0 && ` · tags: ${a.tags.join(", ")}`}
          </p>
          {mayGroup && <Membership agent={a} onSaved={reload} />}
          <section aria-labelledby="policy-heading">
            <h2 id="policy-heading">Effective policy</h2>
            {a.effectivePolicy ? (
              <p>
                <a href={href(`/policies/${a.effectivePolicy.policyId}`)}>{a.effectivePolicy.name}</a> (
                {a.effectivePolicy.via === "agent" ? "assigned to this machine" : "through its group"}):{" "}
                <code>{a.effectivePolicy.scheduleCron}</code> in {a.effectivePolicy.timezone}
              </p>
            ) : (
              <Empty>No enabled policy applies: this machine is not backed up on a schedule.</Empty>
            )}
          </section>
          <section aria-labelledby="volumes-heading">
            <h2 id="volumes-heading">Volumes</h2>
            {a.volumes.length === 0 ? (
              <Empty>The agent has not reported any volume yet.</Empty>
            ) : (
              <div className="table-wrap">
                <table>
                  <caption className="visually-hidden">Volumes of {a.hostname}</caption>
                  <thead>
                    <tr>
                      <th scope="col">Device</th>
                      <th scope="col">Contents</th>
                      <th scope="col">Mounted at</th>
                      <th scope="col">Size</th>
                      <th scope="col">Last restore point</th>
                      <th scope="col">Status</th>
                      <th scope="col">Actions</th>
                    </tr>
                  </thead>
                  <tbody>
                    {a.volumes.map((v) => (
                      <tr key={v.id}>
                        <th scope="row">
                          {v.devicePath}
                          {v.gone && " (gone)"}
                        </th>
                        <td>{v.fsType ?? v.kind.toLowerCase()}</td>
                        <td>{v.mountPoint ?? "—"}</td>
                        <td>{formatBytes(v.sizeBytes)}</td>
                        <td>{v.lastBackup ? formatTime(v.lastBackup.capturedAt) : "—"}</td>
                        <td className={v.rpo === "ok" ? "good" : v.rpo === "unscheduled" ? "" : "problem"}>
                          {RPO_TEXT[v.rpo]}
                        </td>
                        <td className="actions">
                          {mayRun && !v.gone && a.status === "ACTIVE" && (
                            <button
                              type="button"
                              disabled={action.busy}
                              aria-label={`Back up ${v.devicePath} now`}
                              onClick={() =>
                                void action
                                  .run(() => api.runBackup(a.id, v.id))
                                  .then((job) => {
                                    if (job) navigate(`/jobs/${job.id}`);
                                  })
                              }
                            >
                              Back up now
                            </button>
                          )}
                          {mayRestore && v.lastBackup && (
                            <a className="button" href={href("/restore", { agent: a.id, volume: v.id })}>
                              Restore…
                            </a>
                          )}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
            {action.error && <ErrorBox message={action.error} />}
          </section>
          <section aria-labelledby="points-heading">
            <h2 id="points-heading">Restore points</h2>
            <form className="filters" aria-label="Filter restore points" onSubmit={(e) => e.preventDefault()}>
              <label>
                Volume
                <select
                  value={points.filters.volume}
                  onChange={(e) => points.setFilters({ volume: e.target.value })}
                >
                  <option value="">any</option>
                  {a.volumes.map((v) => (
                    <option key={v.id} value={v.id}>
                      {v.devicePath} ({v.fsType ?? v.kind.toLowerCase()})
                    </option>
                  ))}
                </select>
              </label>
              <DayRangeFilter params={points} fromLabel="Captured from" toPrefix="Captured" />
              <ResetFilters params={points} />
            </form>
            <PagedList
              loaded={backups}
              onRetry={reloadBackups}
              params={points}
              what="restore points"
              empty={points.filtered ? "No restore point matches these filters." : "No restore points yet."}
            >
              {(items) => <Timeline points={items} agentId={a.id} mayRestore={mayRestore} />}
            </PagedList>
          </section>
          <section aria-labelledby="machine-jobs-heading">
            <h2 id="machine-jobs-heading">Jobs</h2>
            <form
              className="filters"
              aria-label="Filter the machine's jobs"
              onSubmit={(e) => e.preventDefault()}
            >
              <ChoiceFilter label="State" params={jobList} name="state" options={jobStateSchema.options} />
              <ChoiceFilter label="Kind" params={jobList} name="kind" options={jobKindSchema.options} />
              <ResetFilters params={jobList} />
            </form>
            <PagedList
              loaded={jobs}
              onRetry={reloadJobs}
              params={jobList}
              what="jobs"
              empty={
                jobList.filtered
                  ? "No job of this machine matches these filters."
                  : "No jobs for this machine yet."
              }
            >
              {(items) => (
                <ListTable caption={<>Jobs of {a.hostname}</>} columns={JOB_COLUMNS}>
                  {items.map((j) => (
                    <JobRow key={j.id} job={j} />
                  ))}
                </ListTable>
              )}
            </PagedList>
          </section>
        </>
      )}
    </Show>
  );
}

const TL_WIDTH = 640;
const TL_HEIGHT = 56;
const TL_PAD = 16;

/** Restore points as dots on a time axis (each a link), with the same points as a list below. */
function Timeline({
  points,
  agentId,
  mayRestore,
}: {
  points: Backup[];
  agentId: string;
  mayRestore: boolean;
}) {
  const sorted = [...points].sort((a, b) => a.capturedAt.localeCompare(b.capturedAt));
  const t0 = new Date(sorted[0]?.capturedAt ?? 0).getTime();
  const t1 = Math.max(new Date(sorted[sorted.length - 1]?.capturedAt ?? 0).getTime(), t0 + 1);
  const x = (iso: string) => TL_PAD + ((new Date(iso).getTime() - t0) / (t1 - t0)) * (TL_WIDTH - 2 * TL_PAD);
  const link = (b: Backup) => href("/restore", { agent: agentId, volume: b.volumeId, backup: b.id });
  return (
    <>
      <svg className="timeline" viewBox={`0 0 ${TL_WIDTH} ${TL_HEIGHT}`} aria-hidden="true">
        <line x1={TL_PAD} x2={TL_WIDTH - TL_PAD} y1={24} y2={24} className="axis" />
        {sorted.map((b) => (
          <circle key={b.id} cx={x(b.capturedAt)} cy={24} r={6} className="dot">
            <title>{formatTime(b.capturedAt)}</title>
          </circle>
        ))}
        <text x={TL_PAD} y={50}>
          {formatTime(sorted[0]?.capturedAt)}
        </text>
        <text x={TL_WIDTH - TL_PAD} y={50} textAnchor="end">
          {formatTime(sorted[sorted.length - 1]?.capturedAt)}
        </text>
      </svg>
      <ul className="points">
        {[...sorted].reverse().map((b) => (
          <li key={b.id}>
            {formatTime(b.capturedAt)} — {formatBytes(b.volumeSize)} volume, {formatBytes(b.changedBytes)}{" "}
            changed ({b.method.toLowerCase().replace("_", " ")})
            {mayRestore && (
              <>
                {" "}
                <a href={link(b)}>Restore from this point</a>
              </>
            )}
          </li>
        ))}
      </ul>
    </>
  );
}

/** A machine's groups (which decide its policy) and tags. */
function Membership({ agent, onSaved }: { agent: AgentDetail; onSaved: () => void }) {
  const [groups, reload] = useLoad((signal) => api.groups(signal), []);
  const [chosen, setChosen] = useState(() => new Set(agent.groups.map((g) => g.id)));
  const [tags, setTags] = useState(agent.tags.join(", "));
  const action = useAction();
  return (
    <details className="card">
      <summary>Groups and tags</summary>
      <Show loaded={groups} what="groups" onRetry={reload}>
        {(page) => (
          <form
            onSubmit={(e) => {
              e.preventDefault();
              void action
                .run(() =>
                  api.updateAgent(agent.id, {
                    groupIds: [...chosen],
                    tags: tags.split(/[\s,]+/).filter(Boolean),
                  }),
                )
                .then((r) => r && onSaved());
            }}
          >
            <fieldset>
              <legend>Groups</legend>
              {page.items.length === 0 && (
                <p className="empty">No groups exist yet (create one on Machines).</p>
              )}
              {page.items.map((g) => (
                <label key={g.id} className="check">
                  <input
                    type="checkbox"
                    checked={chosen.has(g.id)}
                    onChange={(e) => {
                      const next = new Set(chosen);
                      if (e.target.checked) next.add(g.id);
                      else next.delete(g.id);
                      setChosen(next);
                    }}
                  />
                  {g.name}
                </label>
              ))}
            </fieldset>
            <label>
              Tags (comma-separated)
              <input value={tags} onChange={(e) => setTags(e.target.value)} />
            </label>
            {action.error && <ErrorBox message={action.error} />}
            <button type="submit" disabled={action.busy}>
              Save groups and tags
            </button>
          </form>
        )}
      </Show>
    </details>
  );
}
