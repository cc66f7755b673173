// Policies: the list, with where each applies.

import { api } from "../api/endpoints";
import { href } from "../router";
import { useCan } from "../session";
import { ListTable, PagedList, SearchFilter, useSearchList } from "../ui/lists";
import { ResetFilters } from "../ui/paging";

export function describeRetention(r: Record<string, number>): string {
  const parts = Object.entries(r).map(([k, v]) => (k === "keepLast" ? `last ${v}` : `${v} ${k}`));
  return parts.length ? parts.join(", ") : "keep everything";
}

export function PoliciesPage() {
  const mayEdit = useCan("editPolicies");
  const {
    params,
    searchBox,
    loaded: policies,
    reload,
  } = useSearchList((q, signal) => api.policies(q, signal));
  return (
    <>
      <h1>Policies</h1>
      {mayEdit && (
        <p>
          <a className="button" href={href("/policies/new")}>
            New policy
          </a>
        </p>
      )}
      <form className="filters" aria-label="Filter policies" onSubmit={(e) => e.preventDefault()}>
        <SearchFilter label="Search name" box={searchBox} />
        <ResetFilters params={params} />
      </form>
      <PagedList
        loaded={policies}
        onRetry={reload}
        params={params}
        what="policies"
        empty={
          params.filtered
            ? "No policy matches this search."
            : "No policies yet: nothing is backed up on a schedule."
        }
      >
        {(items) => (
          <ListTable caption="Backup policies" columns={["Name", "Schedule", "Retention", "State"]}>
            {items.map((p) => (
              <tr key={p.id}>
                <th scope="row">
                  <a href={href(`/policies/${p.id}`)}>{p.name}</a>
                </th>
                <td>
                  <code>{p.scheduleCron}</code> ({p.timezone})
                </td>
                <td>{describeRetention(p.retention)}</td>
                <td>{p.enabled ? "enabled" : "disabled"}</td>
              </tr>
            ))}
          </ListTable>
        )}
      </PagedList>
    </>
  );
}
