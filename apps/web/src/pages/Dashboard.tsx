// The first page after login: is the fleet protected, what failed lately, how full is the storage.
import type { AgentDetail, Backup, Job } from "@bulwark/api";
import { api } from "../api/endpoints";
import { href } from "../router";
import { useCan } from "../session";
import { StoredBytesChart } from "../ui/chart";
import { formatAgo, formatBytes } from "../ui/format";
import { JOB_COLUMNS, JobRow } from "../ui/jobs";
import { ListTable } from "../ui/lists";
import { Empty, Show, useLoad } from "../ui/load";

const DAY_MS = 86_400_000;
/** Pages of restore points the storage chart reads at most (MAX_PAGE_SIZE each). */
const CHART_PAGES = 5;

/** A time's day in the browser's zone, as the Jobs page's date filter takes it. */
function localDay(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}
/** Failures first, then running, then the rest; newest first within each. */
const JOB_ORDER: Record<Job["state"], number> = {
  FAILED: 0,
  MISSED: 1,
  RUNNING: 2,
  QUEUED: 3,
  CANCELLED: 4,
  SUCCEEDED: 5,
};

export function sortJobsFailuresFirst(jobs: Job[]): Job[] {
  return [...jobs].sort(
    (a, b) => JOB_ORDER[a.state] - JOB_ORDER[b.state] || b.createdAt.localeCompare(a.createdAt),
  );
}

/**
 * Why a machine is at risk, or null: a volume missed its recovery point (`late`), or a policy
 * applies and no volume has a restore point yet. A volume without restore points next to one that
 * has them is usually one the policy's selector leaves out (a whole-disk twin, a scratch device).
 */
export function riskOf(agent: AgentDetail): string | null {
  const live = agent.volumes.filter((v) => !v.gone);
  const late = live.filter((v) => v.rpo === "late");
  if (late.length > 0) return `recovery point missed on ${late.map((v) => v.devicePath).join(", ")}`;
  if (agent.effectivePolicy && live.length > 0 && live.every((v) => v.rpo === "none")) {
    return "no restore point yet";
  }
  return null;
}

export function DashboardPage() {
  const seeRepos = useCan("viewRepositories");
  const [fleet, reloadFleet] = useLoad(async (signal) => {
    const page = await api.agents({}, signal);
    const active = page.items.filter((a) => a.status === "ACTIVE");
    return Promise.all(active.map((a) => api.agent(a.id, signal)));
  }, []);
  const [jobs, reloadJobs] = useLoad(
    (signal) => api.jobs({ from: new Date(Date.now() - DAY_MS).toISOString() }, signal),
    [],
  );
  const [repos, reloadRepos] = useLoad(
    (signal) => (seeRepos ? api.repositories(signal) : Promise.resolve(null)),
    [seeRepos],
  );
  // The chart sums what restore points stored: read a bounded number of pages (newest first).
  const [backups, reloadBackups] = useLoad(async (signal) => {
    const items: Backup[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < CHART_PAGES; i++) {
      const page = await api.backups({ cursor }, signal);
      items.push(...page.items);
      if (page.nextCursor === null) return { items, complete: true };
      cursor = page.nextCursor;
    }
    return { items, complete: false };
  }, []);

  return (
    <>
      <h1>Dashboard</h1>
      <div className="cards">
        <section className="card" aria-labelledby="fleet-heading">
          <h2 id="fleet-heading">Machines</h2>
          <Show loaded={fleet} what="machines" onRetry={reloadFleet}>
            {(agents) => {
              const atRisk = agents.flatMap((a) => {
                const risk = riskOf(a);
                return risk ? [{ agent: a, risk }] : [];
              });
              const unscheduled = agents.filter((a) => !a.effectivePolicy).length;
              return agents.length === 0 ? (
                <Empty>
                  No machines yet. <a href={href("/machines")}>Enroll one</a>.
                </Empty>
              ) : (
                <>
                  <p className="big-numbers">
                    <span className="good">
                      <strong>{agents.length - atRisk.length - unscheduled}</strong> protected
                    </span>
                    <span className={atRisk.length ? "problem" : ""}>
                      <strong>{atRisk.length}</strong> at risk
                    </span>
                    {unscheduled > 0 && (
                      <span>
                        <strong>{unscheduled}</strong> without a policy
                      </span>
                    )}
                  </p>
                  {atRisk.length > 0 && (
                    <ul className="plain">
                      {atRisk.map(({ agent: a, risk }) => (
                        <li key={a.id}>
                          <a href={href(`/machines/${a.id}`)}>{a.hostname}</a>: {risk} (last seen{" "}
                          {formatAgo(a.lastSeenAt)})
                        </li>
                      ))}
                    </ul>
                  )}
                </>
              );
            }}
          </Show>
        </section>
        {seeRepos && (
          <section className="card" aria-labelledby="storage-heading">
            <h2 id="storage-heading">Storage</h2>
            <Show loaded={repos} what="repository status" onRetry={reloadRepos}>
              {(list) =>
                !list || list.items.length === 0 ? (
                  <Empty>No repository yet.</Empty>
                ) : (
                  <dl>
                    {list.items.map((r) => (
                      <div key={r.id} className="dl-row">
                        <dt>{r.name}</dt>
                        <dd>
                          {formatBytes(r.storedBytes)} stored, dedup ratio{" "}
                          {r.dedupRatio === null ? "—" : `${r.dedupRatio.toFixed(2)}×`}, {r.backupCount}{" "}
                          {r.backupCount === 1 ? "restore point" : "restore points"}
                        </dd>
                      </div>
                    ))}
                  </dl>
                )
              }
            </Show>
          </section>
        )}
      </div>
      <section aria-labelledby="jobs-heading">
        <h2 id="jobs-heading">Jobs in the last 24 hours</h2>
        <Show loaded={jobs} what="jobs" onRetry={reloadJobs}>
          {(page) =>
            page.items.length === 0 ? (
              <Empty>No jobs ran in the last 24 hours.</Empty>
            ) : (
              <>
                {page.nextCursor !== null && (
                  <p className="meta">
                    More than {page.items.length} jobs ran: this shows the newest.{" "}
                    <a href={href("/jobs", { from: localDay(Date.now() - DAY_MS) })}>
                      All jobs since yesterday
                    </a>
                  </p>
                )}
                <ListTable caption="Jobs of the last 24 hours, failures first" columns={JOB_COLUMNS}>
                  {sortJobsFailuresFirst(page.items).map((j) => (
                    <JobRow key={j.id} job={j} />
                  ))}
                </ListTable>
              </>
            )
          }
        </Show>
      </section>
      <section aria-labelledby="growth-heading">
        <h2 id="growth-heading">Stored bytes over time</h2>
        <Show loaded={backups} what="restore points" onRetry={reloadBackups}>
          {(page) => {
            if (page.items.length === 0) return <Empty>No restore points yet.</Empty>;
            const sorted = [...page.items].sort((a, b) => a.committedAt.localeCompare(b.committedAt));
            let total = 0;
            const points = sorted.map((b) => {
              total += b.storedBytes;
              return { at: new Date(b.committedAt), value: total };
            });
            return (
              <StoredBytesChart
                points={points}
                title={
                  page.complete
                    ? "Bytes stored by restore points"
                    : `Bytes stored by the newest ${page.items.length} restore points`
                }
              />
            );
          }}
        </Show>
      </section>
    </>
  );
}
