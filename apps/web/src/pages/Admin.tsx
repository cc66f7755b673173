// Admin: users and roles, API tokens, the audit log with filters, repository status (verify / GC).
import { type Role, roleSchema } from "@bulwark/api";
import { useState } from "react";
import { api } from "../api/endpoints";
import { href } from "../router";
import { useCan, useMe } from "../session";
import { formatBytes, formatTime } from "../ui/format";
import { ChoiceFilter, DayRangeFilter, ListTable, PagedList, SearchFilter } from "../ui/lists";
import { Empty, ErrorBox, Show, useAction, useLoad } from "../ui/load";
import { dayToIso, ResetFilters, useDebouncedFilter, useListParams } from "../ui/paging";

const TABS = [
  { id: "users", label: "Users" },
  { id: "tokens", label: "API tokens" },
  { id: "audit", label: "Audit log" },
  { id: "repositories", label: "Repositories" },
] as const;

const USER_FILTERS = ["role", "search"] as const;
const TOKEN_FILTERS = ["whose"] as const;
const AUDIT_FILTERS = ["action", "outcome", "from", "to"] as const;

export function AdminPage({ tab }: { tab?: string }) {
  const current = TABS.find((t) => t.id === tab) ?? TABS[0];
  return (
    <>
      <h1>Admin</h1>
      <nav aria-label="Admin sections" className="tabs">
        <ul>
          {TABS.map((t) => (
            <li key={t.id}>
              <a href={href(`/admin/${t.id}`)} aria-current={t.id === current.id ? "page" : undefined}>
                {t.label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      {current.id === "users" && <Users />}
      {current.id === "tokens" && <Tokens />}
      {current.id === "audit" && <Audit />}
      {current.id === "repositories" && <Repositories />}
    </>
  );
}

function Users() {
  const manage = useCan("manageUsers");
  const me = useMe();
  const params = useListParams(USER_FILTERS);
  const { role: roleFilter, search } = params.filters;
  const searchBox = useDebouncedFilter(search, (v) => params.setFilters({ search: v }));
  const [users, reload] = useLoad(
    (signal) =>
      api.users(
        {
          role: roleFilter || undefined,
          search: search || undefined,
          limit: params.limit,
          cursor: params.cursor,
        },
        signal,
      ),
    [roleFilter, search, params.limit, params.cursor],
  );
  const action = useAction();
  const [email, setEmail] = useState("");
  const [displayName, setDisplayName] = useState("");
  const [role, setRole] = useState<Role>("HELPDESK");
  const [password, setPassword] = useState("");
  return (
    <section aria-labelledby="users-heading">
      <h2 id="users-heading">Users and roles</h2>
      {action.error && <ErrorBox message={action.error} />}
      <form className="filters" aria-label="Filter users" onSubmit={(e) => e.preventDefault()}>
        <SearchFilter label="Search e-mail or name" box={searchBox} />
        <ChoiceFilter label="Role" params={params} name="role" options={roleSchema.options} />
        <ResetFilters params={params} />
      </form>
      <PagedList
        loaded={users}
        onRetry={reload}
        params={params}
        what="users"
        empty="No user matches these filters."
      >
        {(items) => (
          <ListTable caption="Users" columns={["E-mail", "Name", "Role", "Last login", "Account"]}>
            {items.map((u) => (
              <tr key={u.id}>
                <th scope="row">{u.email}</th>
                <td>{u.displayName}</td>
                <td>
                  {manage && u.id !== me.user.id ? (
                    <select
                      aria-label={`Role of ${u.email}`}
                      value={u.role}
                      onChange={(e) =>
                        void action
                          .run(() => api.updateUser(u.id, { role: roleSchema.parse(e.target.value) }))
                          .then(reload)
                      }
                    >
                      {roleSchema.options.map((r) => (
                        <option key={r}>{r}</option>
                      ))}
                    </select>
                  ) : (
                    u.role
                  )}
                </td>
                <td>{formatTime(u.lastLoginAt)}</td>
                <td>
                  {manage && u.id !== me.user.id ? (
                    <button
                      type="button"
                      onClick={() =>
                        void action.run(() => api.updateUser(u.id, { disabled: !u.disabled })).then(reload)
                      }
                    >
                      {u.disabled ? `Enable ${u.email}` : `Disable ${u.email}`}
                    </button>
                  ) : u.disabled ? (
                    "disabled"
                  ) : (
                    "active"
                  )}
                </td>
              </tr>
            ))}
          </ListTable>
        )}
      </PagedList>
      {manage && (
        <form
          className="card"
          aria-labelledby="new-user-heading"
          onSubmit={(e) => {
            e.preventDefault();
            void action
              .run(() => api.createUser({ email, displayName, role, password }))
              .then((u) => {
                if (!u) return;
                setEmail("");
                setDisplayName("");
                setPassword("");
                reload();
              });
          }}
        >
          <h3 id="new-user-heading">Add a user</h3>
          <div className="form-row">
            <label>
              E-mail
              <input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
            </label>
            <label>
              Name
              <input required value={displayName} onChange={(e) => setDisplayName(e.target.value)} />
            </label>
            <label>
              Role
              <select value={role} onChange={(e) => setRole(roleSchema.parse(e.target.value))}>
                {roleSchema.options.map((r) => (
                  <option key={r}>{r}</option>
                ))}
              </select>
            </label>
            <label>
              Password (12 characters or more)
              <input
                type="password"
                autoComplete="new-password"
                minLength={12}
                required
                value={password}
                onChange={(e) => setPassword(e.target.value)}
              />
            </label>
          </div>
          <button type="submit" disabled={action.busy}>
            Add user
          </button>
        </form>
      )}
    </section>
  );
}

function Tokens() {
  const manage = useCan("manageUsers");
  const params = useListParams(TOKEN_FILTERS);
  // Only admins may list other users' tokens: they see everyone's unless they ask for their own.
  const everyone = manage && params.filters.whose !== "mine";
  const [tokens, reload] = useLoad(
    (signal) => api.apiTokens({ all: everyone, limit: params.limit, cursor: params.cursor }, signal),
    [everyone, params.limit, params.cursor],
  );
  const action = useAction();
  const [name, setName] = useState("");
  const [secret, setSecret] = useState<string | undefined>();
  return (
    <section aria-labelledby="tokens-heading">
      <h2 id="tokens-heading">API tokens</h2>
      {action.error && <ErrorBox message={action.error} />}
      {manage && (
        <form
          className="filters"
          onSubmit={(e) => {
            e.preventDefault();
            void action
              .run(() => api.createApiToken({ name }))
              .then((r) => {
                if (!r) return;
                setSecret(r.token);
                setName("");
                reload();
              });
          }}
        >
          <label>
            New token name
            <input required value={name} onChange={(e) => setName(e.target.value)} />
          </label>
          <button type="submit">Create token</button>
        </form>
      )}
      {secret && (
        <div className="token-box">
          <label htmlFor="new-token">The new token (shown only now)</label>
          <input id="new-token" readOnly value={secret} />
        </div>
      )}
      {manage && (
        <form className="filters" aria-label="Filter API tokens" onSubmit={(e) => e.preventDefault()}>
          <label>
            Whose tokens
            <select
              value={everyone ? "" : "mine"}
              onChange={(e) => params.setFilters({ whose: e.target.value })}
            >
              <option value="">every user's</option>
              <option value="mine">mine</option>
            </select>
          </label>
          <ResetFilters params={params} />
        </form>
      )}
      <PagedList
        loaded={tokens}
        onRetry={reload}
        params={params}
        what="API tokens"
        empty={
          <>
            {everyone ? "No API tokens yet." : "You have no API tokens."} Scripts and the <code>bulwark</code>{" "}
            CLI log in with one.
          </>
        }
      >
        {(items) => (
          <ListTable caption="API tokens" columns={["Name", "Prefix", "Role", "Last used", "State"]}>
            {items.map((t) => (
              <tr key={t.id}>
                <th scope="row">{t.name}</th>
                <td>
                  <code>{t.prefix}</code>
                </td>
                <td>{t.role ?? "owner's"}</td>
                <td>{formatTime(t.lastUsedAt)}</td>
                <td>
                  {t.revokedAt ? (
                    "revoked"
                  ) : manage ? (
                    <button
                      type="button"
                      onClick={() => void action.run(() => api.revokeApiToken(t.id)).then(reload)}
                    >
                      Revoke {t.name}
                    </button>
                  ) : (
                    "active"
                  )}
                </td>
              </tr>
            ))}
          </ListTable>
        )}
      </PagedList>
    </section>
  );
}

function Audit() {
  const params = useListParams(AUDIT_FILTERS);
  const { action: actionFilter, outcome, from, to } = params.filters;
  const actionBox = useDebouncedFilter(actionFilter, (v) => params.setFilters({ action: v }));
  const [events, reload] = useLoad(
    (signal) =>
      api.audit(
        {
          action: actionFilter || undefined,
          outcome: outcome || undefined,
          from: dayToIso(from, "from"),
          to: dayToIso(to, "to", true),
          limit: params.limit,
          cursor: params.cursor,
        },
        signal,
      ),
    [actionFilter, outcome, from, to, params.limit, params.cursor],
  );
  return (
    <section aria-labelledby="audit-heading">
      <h2 id="audit-heading">Audit log</h2>
      <form className="filters" aria-label="Filter the audit log" onSubmit={(e) => e.preventDefault()}>
        <label>
          Action (exact, or a prefix ending in “.”)
          <input
            value={actionBox.value}
            maxLength={100}
            onChange={(e) => actionBox.onChange(e.target.value)}
            placeholder="auth."
          />
        </label>
        <ChoiceFilter
          label="Outcome"
          params={params}
          name="outcome"
          options={["SUCCESS", "FAILURE", "DENIED"]}
        />
        <DayRangeFilter params={params} fromLabel="From" toPrefix="Events" />
        <ResetFilters params={params} />
      </form>
      <PagedList
        loaded={events}
        onRetry={reload}
        loading="the audit log"
        params={params}
        what="audit events"
        empty={params.filtered ? "No audit events match these filters." : "The audit log is empty."}
      >
        {(items) => (
          <ListTable
            caption="Audit events, newest first"
            columns={["When", "Who", "Action", "Target", "Outcome"]}
          >
            {items.map((e) => (
              <tr key={e.id}>
                <td>{formatTime(e.at)}</td>
                <td>{e.actorName ?? e.actorType.toLowerCase()}</td>
                <td>
                  <code>{e.action}</code>
                </td>
                <td>{e.targetType ? `${e.targetType} ${e.targetId?.slice(0, 8) ?? ""}` : "—"}</td>
                <td className={e.outcome === "SUCCESS" ? "good" : "problem"}>{e.outcome}</td>
              </tr>
            ))}
          </ListTable>
        )}
      </PagedList>
    </section>
  );
}

function Repositories() {
  const [repos, reload] = useLoad((signal) => api.repositories(signal), []);
  const run = (
    r: { state: string; finishedAt: string | null; errorCode: string | null; jobId: string } | null,
  ) =>
    r ? (
      <a href={href(`/jobs/${r.jobId}`)} className={r.state === "SUCCEEDED" ? "good" : "problem"}>
        {r.state.toLowerCase()} {formatTime(r.finishedAt)}
        {r.errorCode ? ` (${r.errorCode})` : ""}
      </a>
    ) : (
      "never"
    );
  return (
    <section aria-labelledby="repos-heading">
      <h2 id="repos-heading">Repositories</h2>
      <Show loaded={repos} what="repositories" onRetry={reload}>
        {(page) =>
          page.items.length === 0 ? (
            <Empty>No repository is set up.</Empty>
          ) : (
            <ListTable
              caption="Repository status"
              columns={["Name", "Stored", "Dedup / compression", "Restore points", "Last verify", "Last GC"]}
            >
              {page.items.map((r) => (
                <tr key={r.id}>
                  <th scope="row">
                    {r.name} <span className="meta">({r.kind.toLowerCase()})</span>
                  </th>
                  <td>{formatBytes(r.storedBytes)}</td>
                  <td>
                    {r.dedupRatio === null ? "—" : `${r.dedupRatio.toFixed(2)}×`} /{" "}
                    {r.compressionRatio === null ? "—" : `${r.compressionRatio.toFixed(2)}×`}
                  </td>
                  <td>{r.backupCount}</td>
                  <td>{run(r.lastVerify)}</td>
                  <td>{run(r.lastGc)}</td>
                </tr>
              ))}
            </ListTable>
          )
        }
      </Show>
    </section>
  );
}
