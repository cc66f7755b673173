// The help desk's restore wizard: machine → restore point → browse files (download a file or a
// folder) or restore the whole volume (target, delta, explicit overwrite confirmation) → live progress.
import type { AgentDetail, Backup, FileEntry, Job } from "@bulwark/api";
import { useState } from "react";
import { api } from "../api/endpoints";
import { href, navigate } from "../router";
import { formatBytes, formatTime } from "../ui/format";
import { PagedList, PageOf, SearchFilter, useSearchList } from "../ui/lists";
import { Empty, ErrorBox, Show, useAction, useLoad } from "../ui/load";
import { useListParams } from "../ui/paging";
import { JobLive } from "../ui/progress";

type Mode = "files" | "volume";

export function RestorePage({ query }: { query: URLSearchParams }) {
  const agentId = query.get("agent") ?? undefined;
  const volumeId = query.get("volume") ?? undefined;
  const backupId = query.get("backup") ?? undefined;
  const mode = (query.get("mode") as Mode | null) ?? undefined;
  const go = (next: Record<string, string | undefined>) =>
    navigate("/restore", { agent: agentId, volume: volumeId, backup: backupId, mode, ...next });

  const step = !agentId ? 1 : !backupId ? 2 : !mode ? 3 : 4;
  const steps = [
    "Machine",
    "Restore point",
    "What to restore",
    mode === "volume" ? "Restore volume" : "Files",
  ];
  return (
    <>
      <h1>Restore</h1>
      <ol className="steps" aria-label="Restore steps">
        {steps.map((s, i) => (
          <li
            key={s}
            aria-current={step === i + 1 ? "step" : undefined}
            className={step > i + 1 ? "done" : ""}
          >
            {s}
          </li>
        ))}
      </ol>
      {step === 1 && <PickMachine onPick={(id) => go({ agent: id, volume: undefined, backup: undefined })} />}
      {agentId && step === 2 && (
        <PickPoint
          agentId={agentId}
          volumeId={volumeId}
          onPick={(b) => go({ backup: b.id, volume: b.volumeId })}
          onBack={() => go({ agent: undefined, volume: undefined })}
        />
      )}
      {agentId && backupId && step === 3 && (
        <section aria-labelledby="choose-heading">
          <h2 id="choose-heading">What do you want to restore?</h2>
          <div className="choices">
            <a
              className="button choice"
              href={href("/restore", { agent: agentId, volume: volumeId, backup: backupId, mode: "files" })}
            >
              Browse files and download some
            </a>
            <a
              className="button choice"
              href={href("/restore", { agent: agentId, volume: volumeId, backup: backupId, mode: "volume" })}
            >
              Restore the whole volume onto a device
            </a>
          </div>
          <p>
            <a href={href("/restore", { agent: agentId, volume: volumeId })}>
              Back: pick another restore point
            </a>
          </p>
        </section>
      )}
      {agentId && backupId && mode === "files" && <FileBrowser backupId={backupId} />}
      {agentId && backupId && mode === "volume" && <VolumeRestore agentId={agentId} backupId={backupId} />}
    </>
  );
}

function PickMachine({ onPick }: { onPick: (id: string) => void }) {
  const {
    params,
    search,
    searchBox,
    loaded: agents,
    reload,
  } = useSearchList((q, signal) => api.agents(q, signal), "m-");
  return (
    <section aria-labelledby="pick-machine-heading">
      <h2 id="pick-machine-heading">Whose data?</h2>
      <form className="filters" aria-label="Find a machine" onSubmit={(e) => e.preventDefault()}>
        <SearchFilter label="Search hostname" box={searchBox} />
      </form>
      <PagedList
        loaded={agents}
        onRetry={reload}
        params={params}
        what="machines"
        empty={search ? "No machine matches this search." : "No machines are enrolled yet."}
      >
        {(items) => (
          <ul className="pick-list">
            {items.map((a) => (
              <li key={a.id}>
                <button type="button" onClick={() => onPick(a.id)}>
                  {a.hostname}
                </button>{" "}
                <span className="meta">{a.online ? "online" : "offline"}</span>
              </li>
            ))}
          </ul>
        )}
      </PagedList>
    </section>
  );
}

function volumeName(agent: AgentDetail, volumeId: string): string {
  const v = agent.volumes.find((x) => x.id === volumeId);
  return v ? `${v.devicePath}${v.mountPoint ? ` (${v.mountPoint})` : ""}` : "a removed volume";
}

function PickPoint({
  agentId,
  volumeId,
  onPick,
  onBack,
}: {
  agentId: string;
  volumeId?: string;
  onPick: (b: Backup) => void;
  onBack: () => void;
}) {
  const params = useListParams([], "p-");
  const [data, reload] = useLoad(
    async (signal) => {
      const [agent, backups] = await Promise.all([
        api.agent(agentId, signal),
        api.backups({ agentId, volumeId, limit: params.limit, cursor: params.cursor }, signal),
      ]);
      return { agent, backups };
    },
    [agentId, volumeId, params.limit, params.cursor],
  );
  return (
    <section aria-labelledby="pick-point-heading">
      <Show loaded={data} what="restore points" onRetry={reload}>
        {({ agent, backups: page }) => (
          <>
            <h2 id="pick-point-heading">Restore points of {agent.hostname}</h2>
            <PageOf
              page={page}
              params={params}
              what="restore points"
              empty="This machine has no restore point yet."
            >
              {(items) => (
                <ul className="pick-list">
                  {items.map((b) => (
                    <li key={b.id}>
                      <button type="button" onClick={() => onPick(b)}>
                        {formatTime(b.capturedAt)}
                      </button>{" "}
                      <span className="meta">
                        {volumeName(agent, b.volumeId)}, {formatBytes(b.volumeSize)}
                      </span>
                    </li>
                  ))}
                </ul>
              )}
            </PageOf>
            <p>
              <button type="button" className="secondary" onClick={onBack}>
                Back: pick another machine
              </button>
            </p>
          </>
        )}
      </Show>
    </section>
  );
}

function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

function FileBrowser({ backupId }: { backupId: string }) {
  const [partition, setPartition] = useState<number | undefined>();
  const [path, setPath] = useState("/");
  const [pattern, setPattern] = useState("");
  const [searched, setSearched] = useState("");
  const [layout, reloadLayout] = useLoad((signal) => api.volumeLayout(backupId, signal), [backupId]);
  const usable =
    layout.state === "ok" ? layout.data.partitions.filter((p) => p.filesystem !== "unknown") : [];
  const chosen = partition ?? usable[0]?.number;
  const [listing, reloadListing] = useLoad(
    (signal) =>
      layout.state === "ok" && chosen !== undefined
        ? api.files(backupId, path, chosen, signal)
        : Promise.resolve(undefined),
    [backupId, path, chosen, layout.state],
  );
  const [found, reloadFound] = useLoad(
    (signal) => (searched ? api.searchFiles(backupId, searched, chosen, signal) : Promise.resolve(undefined)),
    [backupId, searched, chosen],
  );

  const download = (e: FileEntry) =>
    e.type === "directory" ? (
      <>
        <a href={api.archiveUrl(backupId, e.path, chosen, "zip")} download>
          Download {e.name || "folder"} as zip
        </a>{" "}
        <a href={api.archiveUrl(backupId, e.path, chosen, "tar")} download>
          tar
        </a>
      </>
    ) : e.type === "file" ? (
      <a href={api.fileContentUrl(backupId, e.path, chosen)} download>
        Download {e.name}
      </a>
    ) : null;

  return (
    <section aria-labelledby="files-heading">
      <h2 id="files-heading">Files in the restore point</h2>
      <Show loaded={layout} what="the volume layout" onRetry={reloadLayout}>
        {(l) =>
          usable.length === 0 ? (
            <Empty>No filesystem the server can read (ext4, NTFS, FAT) is in this restore point.</Empty>
          ) : (
            <>
              {usable.length > 1 && (
                <label>
                  Partition
                  <select
                    value={chosen}
                    onChange={(e) => {
                      setPartition(Number(e.target.value));
                      setPath("/");
                    }}
                  >
                    {usable.map((p) => (
                      <option key={p.number} value={p.number}>
                        {p.number} — {p.filesystem}, {formatBytes(p.length)} {p.name ?? ""}
                      </option>
                    ))}
                  </select>
                </label>
              )}
              <form
                className="filters"
                aria-label="Search files"
                onSubmit={(e) => {
                  e.preventDefault();
                  setSearched(pattern.trim());
                }}
              >
                <label>
                  Find files by name
                  <input type="search" value={pattern} onChange={(e) => setPattern(e.target.value)} />
                </label>
                <button type="submit">Search</button>
                {searched && (
                  <button
                    type="button"
                    className="secondary"
                    onClick={() => {
                      setSearched("");
                      setPattern("");
                    }}
                  >
                    Clear search
                  </button>
                )}
              </form>
              {searched ? (
                <Show loaded={found} what="search results" onRetry={reloadFound}>
                  {(r) =>
                    !r || r.matches.length === 0 ? (
                      <Empty>Nothing is named like “{searched}”.</Empty>
                    ) : (
                      <ul className="file-list" aria-label="Search results">
                        {r.matches.map((m) => (
                          <li key={m.path}>
                            <code>{m.path}</code> {m.type === "file" && formatBytes(m.size)} {download(m)}
                          </li>
                        ))}
                        {r.truncated && <li>More matches exist: narrow the search.</li>}
                      </ul>
                    )
                  }
                </Show>
              ) : (
                <Show loaded={listing} what={`the folder ${path}`} onRetry={reloadListing}>
                  {(ls) =>
                    ls && (
                      <>
                        <nav aria-label="Folder path" className="breadcrumb">
                          <button type="button" className="link-button" onClick={() => setPath("/")}>
                            {l.table ? `partition ${chosen}` : "volume"} /
                          </button>
                          {ls.entry.path
                            .split("/")
                            .filter(Boolean)
                            .map((part, i, all) => {
                              const to = `/${all.slice(0, i + 1).join("/")}`;
                              return (
                                <button
                                  key={to}
                                  type="button"
                                  className="link-button"
                                  onClick={() => setPath(to)}
                                >
                                  {part} /
                                </button>
                              );
                            })}
                        </nav>
                        <p>{download(ls.entry)}</p>
                        <div className="table-wrap">
                          <table>
                            <caption className="visually-hidden">Contents of {ls.entry.path}</caption>
                            <thead>
                              <tr>
                                <th scope="col">Name</th>
                                <th scope="col">Size</th>
                                <th scope="col">Modified</th>
                                <th scope="col">Download</th>
                              </tr>
                            </thead>
                            <tbody>
                              {ls.entry.path !== "/" && (
                                <tr>
                                  <td colSpan={4}>
                                    <button
                                      type="button"
                                      className="link-button"
                                      onClick={() => setPath(parentOf(ls.entry.path))}
                                    >
                                      .. (up one folder)
                                    </button>
                                  </td>
                                </tr>
                              )}
                              {(ls.entries ?? []).map((e) => (
                                <tr key={e.path}>
                                  <th scope="row">
                                    {e.type === "directory" ? (
                                      <button
                                        type="button"
                                        className="link-button"
                                        onClick={() => setPath(e.path)}
                                      >
                                        📁 {e.name}
                                      </button>
                                    ) : (
                                      <span>{e.name}</span>
                                    )}
                                  </th>
                                  <td>{e.type === "file" ? formatBytes(e.size) : ""}</td>
                                  <td>{formatTime(e.mtime)}</td>
                                  <td>{download(e)}</td>
                                </tr>
                              ))}
                            </tbody>
                          </table>
                        </div>
                        {(ls.entries ?? []).length === 0 && <Empty>This folder is empty.</Empty>}
                      </>
                    )
                  }
                </Show>
              )}
            </>
          )
        }
      </Show>
    </section>
  );
}

function VolumeRestore({ agentId, backupId }: { agentId: string; backupId: string }) {
  const [data, reload] = useLoad(
    async (signal) => {
      const [backup, source, agents] = await Promise.all([
        api.backup(backupId, signal),
        api.agent(agentId, signal),
        api.agents({}, signal),
      ]);
      return { backup, source, agents: agents.items.filter((a) => a.status === "ACTIVE") };
    },
    [agentId, backupId],
  );
  return (
    <Show loaded={data} what="the restore point" onRetry={reload}>
      {(d) => <VolumeRestoreForm {...d} />}
    </Show>
  );
}

function VolumeRestoreForm({
  backup,
  source,
  agents,
}: {
  backup: Backup;
  source: AgentDetail;
  agents: { id: string; hostname: string }[];
}) {
  const sourceVolume = source.volumes.find((v) => v.id === backup.volumeId);
  const [targetAgent, setTargetAgent] = useState(source.id);
  const [targetPath, setTargetPath] = useState(sourceVolume?.devicePath ?? "");
  const [delta, setDelta] = useState(true);
  const [confirmed, setConfirmed] = useState(false);
  const [job, setJob] = useState<Job | undefined>();
  const action = useAction();
  const targetHost = agents.find((a) => a.id === targetAgent)?.hostname ?? "the machine";
  const foreign = targetAgent !== source.id || targetPath !== sourceVolume?.devicePath;

  if (job) {
    return (
      <section aria-labelledby="restore-progress-heading">
        <h2 id="restore-progress-heading">
          Restoring onto {targetPath} on {targetHost}
        </h2>
        <JobLive jobId={job.id} initial={job} />
        <p>
          <a href={href(`/jobs/${job.id}`)}>Open the job</a>
        </p>
      </section>
    );
  }
  return (
    <section aria-labelledby="restore-volume-heading">
      <h2 id="restore-volume-heading">Restore the volume from {formatTime(backup.capturedAt)}</h2>
      <p>
        Source: {sourceVolume?.devicePath ?? "a removed volume"} of {source.hostname},{" "}
        {formatBytes(backup.volumeSize)}.
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void action
            .run(() =>
              api.startRestore({
                backupId: backup.id,
                agentId: targetAgent,
                targetPath,
                mode: delta ? "delta" : "full",
                allowForeignTarget: foreign || undefined,
                idempotencyKey: `console:${backup.id}:${crypto.randomUUID()}`,
              }),
            )
            .then((j) => j && setJob(j));
        }}
      >
        <label>
          Target machine
          <select value={targetAgent} onChange={(e) => setTargetAgent(e.target.value)}>
            {agents.map((a) => (
              <option key={a.id} value={a.id}>
                {a.hostname}
                {a.id === source.id ? " (the original machine)" : ""}
              </option>
            ))}
          </select>
        </label>
        <label>
          Target device or image file
          <input required value={targetPath} onChange={(e) => setTargetPath(e.target.value)} />
        </label>
        <label className="check">
          <input type="checkbox" checked={delta} onChange={(e) => setDelta(e.target.checked)} />
          Delta: rewrite only the blocks that differ (faster when the target still holds this volume)
        </label>
        <fieldset className="danger">
          <legend>Overwrite</legend>
          <label className="check">
            <input type="checkbox" checked={confirmed} onChange={(e) => setConfirmed(e.target.checked)} />I
            understand that everything on {targetPath || "the target"} on {targetHost} is overwritten.
          </label>
        </fieldset>
        {action.error && <ErrorBox message={action.error} />}
        <button type="submit" disabled={!confirmed || !targetPath || action.busy}>
          {action.busy ? "Starting…" : "Start restore"}
        </button>
      </form>
    </section>
  );
}
