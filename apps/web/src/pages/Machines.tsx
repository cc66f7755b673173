// Machines: search and filter the fleet, and enroll a new machine (an enrollment token and the
// command that installs it).
import { useState } from "react";
import { api } from "../api/endpoints";
import { href } from "../router";
import { useCan } from "../session";
import { formatAgo, formatTime } from "../ui/format";
import { ChoiceFilter, ListTable, PagedList, SearchFilter } from "../ui/lists";
import { ErrorBox, useAction, useLoad } from "../ui/load";
import { ResetFilters, useDebouncedFilter, useListParams } from "../ui/paging";

const MACHINE_FILTERS = ["search", "group", "tag", "status"] as const;

export function MachinesPage() {
  const mayEnroll = useCan("enroll");
  const params = useListParams(MACHINE_FILTERS);
  const { search, group, tag, status } = params.filters;
  const { limit, cursor } = params;
  const searchBox = useDebouncedFilter(search, (v) => params.setFilters({ search: v }));
  const tagBox = useDebouncedFilter(tag, (v) => params.setFilters({ tag: v }));
  const [agents, reload] = useLoad(
    (signal) =>
      api.agents(
        {
          search: search || undefined,
          group: group || undefined,
          tag: tag || undefined,
          status: status || undefined,
          limit,
          cursor,
        },
        signal,
      ),
    [search, group, tag, status, limit, cursor],
  );
  const mayGroup = useCan("manageGroups");
  const [groups, reloadGroups] = useLoad((signal) => api.groups(signal), []);

  return (
    <>
      <h1>Machines</h1>
      {mayEnroll && <EnrollPanel groups={groups.state === "ok" ? groups.data.items : []} />}
      {mayGroup && <NewGroup onCreated={reloadGroups} />}
      <form className="filters" aria-label="Filter machines" onSubmit={(e) => e.preventDefault()}>
        <SearchFilter label="Search hostname" box={searchBox} />
        <label>
          Group
          <select value={group} onChange={(e) => params.setFilters({ group: e.target.value })}>
            <option value="">any</option>
            {group && groups.state === "ok" && !groups.data.items.some((g) => g.id === group) && (
              <option value={group}>the group in the link</option>
            )}
            {groups.state === "ok" &&
              groups.data.items.map((g) => (
                <option key={g.id} value={g.id}>
                  {g.name}
                </option>
              ))}
          </select>
        </label>
        <label>
          Tag
          <input
            value={tagBox.value}
            maxLength={64}
            onChange={(e) => tagBox.onChange(e.target.value)}
            pattern="[\w.:\-]*"
          />
        </label>
        <ChoiceFilter
          label="Status"
          params={params}
          name="status"
          options={["online", "offline", "revoked"]}
        />
        <ResetFilters params={params} />
      </form>
      <PagedList
        loaded={agents}
        onRetry={reload}
        params={params}
        what="machines"
        empty={
          params.filtered
            ? "No machine matches these filters."
            : mayEnroll
              ? "No machines are enrolled yet. Use “Enroll a machine” above to add one."
              : "No machines are enrolled yet."
        }
      >
        {(items) => (
          <ListTable
            caption="Machines"
            columns={["Hostname", "Status", "OS", "Groups", "Tags", "Last seen"]}
            busy={agents.state === "ok" && agents.stale}
          >
            {items.map((a) => (
              <tr key={a.id}>
                <th scope="row">
                  <a href={href(`/machines/${a.id}`)}>{a.hostname}</a>
                </th>
                <td>
                  <span className={a.status === "REVOKED" ? "problem" : a.online ? "good" : ""}>
                    {a.status === "REVOKED" ? "revoked" : a.online ? "online" : "offline"}
                  </span>
                </td>
                <td>
                  {a.os} {a.osVersion ?? ""}
                </td>
                <td>{a.groups.map((g) => g.name).join(", ") || "—"}</td>
                <td>{a.tags.join(", ") || "—"}</td>
                <td title={formatTime(a.lastSeenAt)}>{formatAgo(a.lastSeenAt)}</td>
              </tr>
            ))}
          </ListTable>
        )}
      </PagedList>
    </>
  );
}

const TOKEN_PATH = "/root/bulwark-agent.token";

/** The shell lines that put the token on the machine and enroll it (the token never goes on a command line). */
export function installCommand(tokenFile: string): string {
  const body = tokenFile.endsWith("\n") ? tokenFile : `${tokenFile}\n`;
  return `umask 077 && cat > ${TOKEN_PATH} <<'BULWARK_TOKEN'\n${body}BULWARK_TOKEN\nbulwark-agent enroll --token-file ${TOKEN_PATH} && rm ${TOKEN_PATH}\nbulwark-agent run`;
}

function EnrollPanel({ groups }: { groups: { id: string; name: string }[] }) {
  const [open, setOpen] = useState(false);
  const [groupId, setGroupId] = useState("");
  const [tags, setTags] = useState("");
  const [hours, setHours] = useState(24);
  const [made, setMade] = useState<{ command: string; expiresAt: string } | undefined>();
  const [copied, setCopied] = useState(false);
  const action = useAction();
  if (!open) {
    return (
      <p>
        <button type="button" onClick={() => setOpen(true)}>
          Enroll a machine
        </button>
      </p>
    );
  }
  return (
    <section className="card" aria-labelledby="enroll-heading">
      <h2 id="enroll-heading">Enroll a machine</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setCopied(false);
          void action
            .run(() =>
              api.createEnrollmentToken({
                groupId: groupId || undefined,
                tags: tags.split(/[\s,]+/).filter(Boolean),
                ttlSeconds: Math.round(hours * 3600),
              }),
            )
            .then((r) => r && setMade({ command: installCommand(r.tokenFile), expiresAt: r.expiresAt }));
        }}
      >
        <div className="form-row">
          <label>
            Group
            <select value={groupId} onChange={(e) => setGroupId(e.target.value)}>
              <option value="">none</option>
              {groups.map((g) => (
                <option key={g.id} value={g.id}>
                  {g.name}
                </option>
              ))}
            </select>
          </label>
          <label>
            Tags (comma-separated)
            <input value={tags} onChange={(e) => setTags(e.target.value)} />
          </label>
          <label>
            Valid for (hours)
            <input
              type="number"
              min={1}
              max={720}
              value={hours}
              onChange={(e) => setHours(Number(e.target.value))}
            />
          </label>
        </div>
        <button type="submit" disabled={action.busy}>
          {action.busy ? "Creating…" : "Create enrollment token"}
        </button>
        <button type="button" className="secondary" onClick={() => setOpen(false)}>
          Close
        </button>
      </form>
      {action.error && <ErrorBox message={action.error} />}
      {made && (
        <div className="token-box">
          <p>
            Run this as root on the new machine. The token works once and until {formatTime(made.expiresAt)}.
            It is shown only now.
          </p>
          <label htmlFor="install-command">Install command</label>
          <textarea id="install-command" readOnly rows={14} value={made.command} />
          <button
            type="button"
            onClick={() =>
              void navigator.clipboard.writeText(made.command).then(
                () => setCopied(true),
                () => setCopied(false),
              )
            }
          >
            Copy command
          </button>
          {copied && <span role="status"> Copied.</span>}
        </div>
      )}
    </section>
  );
}

function NewGroup({ onCreated }: { onCreated: () => void }) {
  const [name, setName] = useState("");
  const [made, setMade] = useState<string | undefined>();
  const action = useAction();
  return (
    <form
      className="filters"
      aria-label="New group"
      onSubmit={(e) => {
        e.preventDefault();
        void action
          .run(() => api.createGroup({ name: name.trim() }))
          .then((g) => {
            if (!g) return;
            setMade(g.name);
            setName("");
            onCreated();
          });
      }}
    >
      <label>
        New group name
        <input required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
      </label>
      <button type="submit" disabled={action.busy}>
        Create group
      </button>
      {made && <span role="status">Group {made} created.</span>}
      {action.error && <ErrorBox message={action.error} />}
    </form>
  );
}
