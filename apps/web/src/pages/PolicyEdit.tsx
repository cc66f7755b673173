// Create or edit a policy: schedule with a preview of the next runs in the policy's timezone,
// window, retention with a preview of which restore points it keeps, volume selector, groups.
import {
  type Assignment,
  type CreatePolicyRequest,
  type Group,
  type Policy,
  type RepositoryStatus,
  volumeSelectorSchema,
} from "@bulwark/api";
import {
  planRetention,
  type RetentionPolicy,
  retentionPolicySchema,
  retentionRules,
} from "@bulwark/retention";
import { previewRuns } from "@bulwark/schedule";
import { useMemo, useState } from "react";
import { api } from "../api/endpoints";
import { href, navigate } from "../router";
import { useCan } from "../session";
import { formatTime } from "../ui/format";
import { ErrorBox, Show, useAction, useLoad } from "../ui/load";

/** Runs the schedule preview lists. */
const PREVIEW_RUNS = 5;

export function PolicyEditPage({ id }: { id?: string }) {
  const [data, reload] = useLoad(
    async (signal) => {
      const [policy, groups, repos, assignments] = await Promise.all([
        id ? api.policy(id, signal) : Promise.resolve(undefined),
        api.groups(signal),
        api.repositories(signal).catch(() => ({ items: [] as RepositoryStatus[] })),
        id ? api.assignments(id, signal) : Promise.resolve({ items: [] as Assignment[] }),
      ]);
      return { policy, groups: groups.items, repos: repos.items, assignments: assignments.items };
    },
    [id],
  );
  return (
    <>
      <p className="breadcrumb">
        <a href={href("/policies")}>Policies</a> /
      </p>
      <Show loaded={data} what="the policy" onRetry={reload}>
        {(d) => <PolicyForm key={d.policy?.id ?? "new"} {...d} onSaved={reload} />}
      </Show>
    </>
  );
}

const minutesToTime = (m: number | null) =>
  m === null ? "" : `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
const timeToMinutes = (t: string) => {
  const [h, m] = t.split(":").map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
};

function PolicyForm({
  policy,
  groups,
  repos,
  assignments,
  onSaved,
}: {
  policy?: Policy;
  groups: Group[];
  repos: RepositoryStatus[];
  assignments: Assignment[];
  onSaved: () => void;
}) {
  const mayEdit = useCan("editPolicies");
  const [name, setName] = useState(policy?.name ?? "");
  const [enabled, setEnabled] = useState(policy?.enabled ?? true);
  const [cron, setCron] = useState(policy?.scheduleCron ?? "0 22 * * *");
  const [timezone, setTimezone] = useState(
    policy?.timezone ?? Intl.DateTimeFormat().resolvedOptions().timeZone ?? "UTC",
  );
  const [windowOn, setWindowOn] = useState(policy?.windowStartMinute != null);
  const [windowStart, setWindowStart] = useState(minutesToTime(policy?.windowStartMinute ?? 20 * 60));
  const [windowHours, setWindowHours] = useState((policy?.windowMinutes ?? 480) / 60);
  const [retention, setRetention] = useState<Record<string, string>>(() =>
    Object.fromEntries(
      retentionRules.map((r) => [r, String(policy?.retention[r] ?? (policy ? "" : r === "daily" ? 7 : ""))]),
    ),
  );
  const [selectorKind, setSelectorKind] = useState(policy?.volumeSelector.kind ?? "all-fixed");
  const [selectorList, setSelectorList] = useState(() => {
    const s = policy?.volumeSelector;
    return s?.kind === "mount-points"
      ? s.mountPoints.join("\n")
      : s?.kind === "devices"
        ? s.devices.join("\n")
        : "";
  });
  const [repositoryId, setRepositoryId] = useState(policy?.repositoryId ?? repos[0]?.id ?? "");
  // KiB/s in the form ("" = unlimited); the API takes bytes per second.
  const [bandwidthKiB, setBandwidthKiB] = useState(
    policy?.bandwidthLimitBps ? String(Math.round(policy.bandwidthLimitBps / 1024)) : "",
  );
  const [groupIds, setGroupIds] = useState(
    () => new Set(assignments.flatMap((a) => (a.groupId ? [a.groupId] : []))),
  );
  const action = useAction();
  const [saved, setSaved] = useState(false);

  const windowStartMinute = windowOn ? timeToMinutes(windowStart) : null;
  const windowMinutes = windowOn ? Math.round(windowHours * 60) : null;
  const preview = useMemo(() => {
    const window =
      windowStartMinute === null || windowMinutes === null
        ? null
        : { startMinute: windowStartMinute, minutes: windowMinutes };
    try {
      return { runs: previewRuns({ cron, timezone, window }, new Date(), PREVIEW_RUNS) };
    } catch (err) {
      return { error: err instanceof Error ? err.message : String(err) };
    }
  }, [cron, timezone, windowStartMinute, windowMinutes]);

  const retentionValue: RetentionPolicy = Object.fromEntries(
    Object.entries(retention).flatMap(([k, v]) => (v.trim() === "" ? [] : [[k, Number(v)]])),
  );
  const retentionCheck = retentionPolicySchema.safeParse(retentionValue);

  const selector = volumeSelectorSchema.safeParse(
    selectorKind === "all-fixed"
      ? { kind: "all-fixed" }
      : selectorKind === "mount-points"
        ? {
            kind: "mount-points",
            mountPoints: selectorList
              .split("\n")
              .map((s) => s.trim())
              .filter(Boolean),
          }
        : {
            kind: "devices",
            devices: selectorList
              .split("\n")
              .map((s) => s.trim())
              .filter(Boolean),
          },
  );

  const save = async () => {
    if (!selector.success) throw new Error("The volume selector needs at least one entry.");
    if (!retentionCheck.success)
      throw new Error(retentionCheck.error.issues.map((i) => i.message).join("; "));
    const kib = bandwidthKiB.trim() === "" ? null : Number(bandwidthKiB);
    if (kib !== null && !(Number.isInteger(kib) && kib >= 1)) {
      throw new Error("The bandwidth limit is a whole number of KiB/s (1 or more), or empty for no limit.");
    }
    const body: CreatePolicyRequest = {
      name,
      enabled,
      scheduleCron: cron,
      timezone,
      windowStartMinute,
      windowMinutes,
      retention: retentionCheck.data,
      volumeSelector: selector.data,
      bandwidthLimitBps: kib === null ? null : kib * 1024,
      repositoryId,
    };
    const savedPolicy = policy ? await api.updatePolicy(policy.id, body) : await api.createPolicy(body);
    // Group assignments: add the ticked groups, remove the unticked ones.
    for (const g of groupIds) {
      if (!assignments.some((a) => a.groupId === g)) await api.assign(savedPolicy.id, g);
    }
    for (const a of assignments) {
      if (a.groupId && !groupIds.has(a.groupId)) await api.unassign(a.id);
    }
    return savedPolicy;
  };

  return (
    <form
      className="policy-form"
      onSubmit={(e) => {
        e.preventDefault();
        setSaved(false);
        void action.run(save).then((p) => {
          if (!p) return;
          setSaved(true);
          if (!policy) navigate(`/policies/${p.id}`);
          else onSaved();
        });
      }}
    >
      <h1>{policy ? `Policy ${policy.name}` : "New policy"}</h1>
      <fieldset disabled={!mayEdit}>
        <legend>General</legend>
        <label>
          Name
          <input required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <label className="check">
          <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} /> Enabled
        </label>
        <label>
          Repository
          <select required value={repositoryId} onChange={(e) => setRepositoryId(e.target.value)}>
            {repos.length === 0 && <option value="">no repository visible</option>}
            {repos.map((r) => (
              <option key={r.id} value={r.id}>
                {r.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Upload limit per machine (KiB/s, empty for none)
          <input
            type="number"
            min={1}
            step={1}
            inputMode="numeric"
            value={bandwidthKiB}
            onChange={(e) => setBandwidthKiB(e.target.value)}
          />
        </label>
      </fieldset>
      <fieldset disabled={!mayEdit}>
        <legend>Schedule</legend>
        <div className="form-row">
          <label>
            Cron expression (minute hour day month weekday)
            <input
              required
              value={cron}
              onChange={(e) => setCron(e.target.value)}
              aria-describedby="runs-preview"
            />
          </label>
          <label>
            Timezone (IANA name)
            <input required value={timezone} onChange={(e) => setTimezone(e.target.value)} />
          </label>
        </div>
        <label className="check">
          <input type="checkbox" checked={windowOn} onChange={(e) => setWindowOn(e.target.checked)} /> Only
          start inside a backup window
        </label>
        {windowOn && (
          <div className="form-row">
            <label>
              Window opens at (local time)
              <input type="time" value={windowStart} onChange={(e) => setWindowStart(e.target.value)} />
            </label>
            <label>
              Window length (hours)
              <input
                type="number"
                min={0.25}
                max={24}
                step={0.25}
                value={windowHours}
                onChange={(e) => setWindowHours(Number(e.target.value))}
              />
            </label>
          </div>
        )}
        <div id="runs-preview" aria-live="polite">
          {"error" in preview ? (
            <p className="problem">This schedule does not work: {preview.error}</p>
          ) : (
            <>
              <p>Next runs ({timezone}):</p>
              <ul className="plain">
                {preview.runs?.map((r) => (
                  <li key={r.at}>
                    {r.local}
                    {r.inWindow ? "" : " — outside the window, skipped"}
                  </li>
                ))}
              </ul>
            </>
          )}
        </div>
      </fieldset>
      <fieldset disabled={!mayEdit}>
        <legend>Retention (restore points to keep)</legend>
        <div className="form-row">
          {retentionRules.map((r) => (
            <label key={r}>
              {r === "keepLast" ? "Last" : r[0]?.toUpperCase() + r.slice(1)}
              <input
                type="number"
                min={0}
                value={retention[r] ?? ""}
                onChange={(e) => setRetention({ ...retention, [r]: e.target.value })}
              />
            </label>
          ))}
        </div>
        {!retentionCheck.success && (
          <p className="problem">{retentionCheck.error.issues.map((i) => i.message).join("; ")}</p>
        )}
        {retentionCheck.success && <RetentionPreview policy={retentionCheck.data} timezone={timezone} />}
      </fieldset>
      <fieldset disabled={!mayEdit}>
        <legend>Volumes</legend>
        <label>
          Which volumes
          <select
            value={selectorKind}
            onChange={(e) => setSelectorKind(e.target.value as typeof selectorKind)}
          >
            <option value="all-fixed">all fixed volumes</option>
            <option value="mount-points">these mount points</option>
            <option value="devices">these devices</option>
          </select>
        </label>
        {selectorKind !== "all-fixed" && (
          <label>
            {selectorKind === "mount-points" ? "Mount points" : "Devices"}, one per line
            <textarea rows={3} value={selectorList} onChange={(e) => setSelectorList(e.target.value)} />
          </label>
        )}
      </fieldset>
      <fieldset disabled={!mayEdit}>
        <legend>Applies to groups</legend>
        {groups.length === 0 ? (
          <p className="empty">No groups exist yet.</p>
        ) : (
          groups.map((g) => (
            <label key={g.id} className="check">
              <input
                type="checkbox"
                checked={groupIds.has(g.id)}
                onChange={(e) => {
                  const next = new Set(groupIds);
                  if (e.target.checked) next.add(g.id);
                  else next.delete(g.id);
                  setGroupIds(next);
                }}
              />
              {g.name} ({g.memberCount} machines)
            </label>
          ))
        )}
      </fieldset>
      {action.error && <ErrorBox message={action.error} />}
      {saved && <p role="status">Saved.</p>}
      {mayEdit && (
        <button type="submit" disabled={action.busy}>
          {action.busy ? "Saving…" : policy ? "Save changes" : "Create policy"}
        </button>
      )}
    </form>
  );
}

/** Which of a machine's restore points this retention would keep, computed in the browser. */
function RetentionPreview({ policy, timezone }: { policy: RetentionPolicy; timezone: string }) {
  const [agentId, setAgentId] = useState("");
  const [agents] = useLoad((signal) => api.agents({}, signal), []);
  const [backups, reload] = useLoad(
    (signal) => (agentId ? api.backups({ agentId }, signal) : Promise.resolve(undefined)),
    [agentId],
  );
  let plan: ReturnType<typeof planRetention> | undefined;
  let problem: string | undefined;
  if (backups.state === "ok" && backups.data) {
    try {
      plan = planRetention(
        backups.data.items.map((b) => ({ id: b.id, time: new Date(b.capturedAt) })),
        policy,
        { timezone },
      );
    } catch (err) {
      problem = err instanceof Error ? err.message : String(err);
    }
  }
  const when = new Map(
    backups.state === "ok" ? (backups.data?.items ?? []).map((b) => [b.id, b.capturedAt]) : [],
  );
  return (
    <div className="retention-preview">
      <label>
        Preview on the restore points of
        <select value={agentId} onChange={(e) => setAgentId(e.target.value)}>
          <option value="">choose a machine</option>
          {agents.state === "ok" &&
            agents.data.items.map((a) => (
              <option key={a.id} value={a.id}>
                {a.hostname}
              </option>
            ))}
        </select>
      </label>
      {agentId && (
        <Show loaded={backups} what="restore points" onRetry={reload}>
          {() =>
            problem ? (
              <p className="problem">{problem}</p>
            ) : plan && plan.keep.length + plan.remove.length === 0 ? (
              <p className="empty">This machine has no restore points.</p>
            ) : (
              plan && (
                <ul className="plain">
                  {plan.keep.map((k) => (
                    <li key={k.id} className="good">
                      keep {formatTime(when.get(k.id))} ({k.reasons.join(", ")})
                    </li>
                  ))}
                  {plan.remove.map((r) => (
                    <li key={r.id} className="problem">
                      delete {formatTime(when.get(r.id))}
                    </li>
                  ))}
                </ul>
              )
            )
          }
        </Show>
      )}
    </div>
  );
}
