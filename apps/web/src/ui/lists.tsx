// The pieces every paged list repeats: the search box of its filter form, the empty message or the
// rows, the pager under them, and the table with a hidden caption and column headings.
import type { ReactNode } from "react";
import { Empty, type Loaded, Show, useLoad } from "./load";
import { type ListParams, Pager, useDebouncedFilter, useListParams } from "./paging";

/** One page of a keyset-paged API answer. */
export interface ListPage<T> {
  items: T[];
  nextCursor: string | null;
}

const SEARCH_ONLY = ["search"] as const;

/**
 * A list whose only filter is a search text (policies, the restore wizard's machines): its address
 * state, the debounced search box and the loaded page. `prefix` as in useListParams.
 */
export function useSearchList<T>(
  fetch: (
    q: { search?: string; limit: number; cursor?: string },
    signal: AbortSignal,
  ) => Promise<ListPage<T>>,
  prefix = "",
) {
  const params = useListParams(SEARCH_ONLY, prefix);
  const { search } = params.filters;
  const searchBox = useDebouncedFilter(search, (v) => params.setFilters({ search: v }));
  const [loaded, reload] = useLoad(
    (signal) => fetch({ search: search || undefined, limit: params.limit, cursor: params.cursor }, signal),
    [search, params.limit, params.cursor],
  );
  return { params, search, searchBox, loaded, reload };
}

/** A select filter over fixed values, "any" first (the filter unset). */
export function ChoiceFilter<F extends string>({
  label,
  params,
  name,
  options,
}: {
  label: string;
  params: ListParams<F>;
  name: F;
  options: readonly string[];
}) {
  return (
    <label>
      {label}
      <select
        value={params.filters[name]}
        onChange={(e) => params.setFilters({ [name]: e.target.value } as Partial<Record<F, string>>)}
      >
        <option value="">any</option>
        {options.map((o) => (
          <option key={o}>{o}</option>
        ))}
      </select>
    </label>
  );
}

type DayFilter = "from" | "to";

/**
 * The `from` / `to` day filters (`to` includes the whole day). `toPrefix` ("Created") is said only to
 * screen readers before "to (inclusive)", so each date input has its own name.
 */
export function DayRangeFilter<F extends string>({
  params,
  fromLabel,
  toPrefix,
}: {
  params: ListParams<F | DayFilter>;
  fromLabel: string;
  toPrefix: string;
}) {
  const set = (name: DayFilter, v: string) =>
    params.setFilters({ [name]: v } as Partial<Record<F | DayFilter, string>>);
  return (
    <>
      <label>
        {fromLabel}
        <input type="date" value={params.filters.from} onChange={(e) => set("from", e.target.value)} />
      </label>
      <label>
        <span className="visually-hidden">{`${toPrefix} `}</span>to (inclusive)
        <input type="date" value={params.filters.to} onChange={(e) => set("to", e.target.value)} />
      </label>
    </>
  );
}

/** A search input bound to a debounced address filter (see useDebouncedFilter). */
export function SearchFilter({
  label,
  box,
}: {
  label: string;
  box: { value: string; onChange(v: string): void };
}) {
  return (
    <label>
      {label}
      <input type="search" maxLength={200} value={box.value} onChange={(e) => box.onChange(e.target.value)} />
    </label>
  );
}

/** A loaded page: the empty message or the rows, then the pager. `what` names the entries in the pager. */
export function PageOf<T, F extends string>({
  page,
  params,
  what,
  empty,
  children,
}: {
  page: ListPage<T>;
  params: ListParams<F>;
  what: string;
  empty: ReactNode;
  children: (items: T[]) => ReactNode;
}) {
  return (
    <>
      {page.items.length === 0 ? <Empty>{empty}</Empty> : children(page.items)}
      <Pager params={params} count={page.items.length} nextCursor={page.nextCursor} what={what} />
    </>
  );
}

/** A list loading one page: waiting / error with retry, then PageOf. `loading` defaults to `what`. */
export function PagedList<T, F extends string>({
  loaded,
  onRetry,
  loading,
  ...rest
}: {
  loaded: Loaded<ListPage<T>>;
  onRetry: () => void;
  loading?: string;
  params: ListParams<F>;
  what: string;
  empty: ReactNode;
  children: (items: T[]) => ReactNode;
}) {
  return (
    <Show loaded={loaded} what={loading ?? rest.what} onRetry={onRetry}>
      {(page) => <PageOf page={page} {...rest} />}
    </Show>
  );
}

/** A scrollable table with a caption for screen readers and one heading per column. */
export function ListTable({
  caption,
  columns,
  busy,
  children,
}: {
  caption: ReactNode;
  columns: readonly string[];
  /** The rows shown are the previous answer while a new one loads. */
  busy?: boolean;
  children: ReactNode;
}) {
  return (
    <div className="table-wrap" aria-busy={busy}>
      <table>
        <caption className="visually-hidden">{caption}</caption>
        <thead>
          <tr>
            {columns.map((c) => (
              <th scope="col" key={c}>
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}
