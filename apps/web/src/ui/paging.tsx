// Paged, filtered lists whose state lives in the address (#/jobs?state=FAILED&cursor=…), so a
// help-desk link opens the same list. The API pages by keyset (`nextCursor` only, no totals), so
// "Previous" comes from remembering which cursor led to which page.
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from "@bulwark/api";
import { type ReactNode, useEffect, useRef, useState } from "react";
import { navigate, routePath, useRoute } from "../router";

export const PAGE_SIZES = [25, DEFAULT_PAGE_SIZE, 100, MAX_PAGE_SIZE] as const;

/**
 * For each visited page (list, filters and cursor): the cursor of the page before it and its page
 * number. Module-level so it survives moving between console pages and the browser's Back button.
 */
const visited = new Map<string, { previous: string | undefined; number: number | undefined }>();

export interface ListParams<F extends string> {
  /** Filter values from the address ("" when unset). */
  filters: Record<F, string>;
  /** Whether any filter is set (for "No machine matches" versus "No machines yet"). */
  filtered: boolean;
  cursor: string | undefined;
  limit: number;
  /** 1 for the first page; undefined when a shared link opened a later page. */
  pageNumber: number | undefined;
  /** Sets filters (the list starts again at its first page); replaces the history entry. */
  setFilters(changes: Partial<Record<F, string>>): void;
  /** Clears every filter and the position. */
  reset(): void;
  setLimit(limit: number): void;
  next(cursor: string): void;
  /** Undefined on the first page. */
  previous: (() => void) | undefined;
  first: (() => void) | undefined;
}

export function parseLimit(raw: string | null): number {
  const n = raw === null ? Number.NaN : Number(raw);
  return Number.isInteger(n) && n >= 1 && n <= MAX_PAGE_SIZE ? n : DEFAULT_PAGE_SIZE;
}

/**
 * The filters and position of one list on the current page. `prefix` keeps two lists on one page
 * apart in the address (e.g. "points-" and "jobs-" on a machine's page).
 */
export function useListParams<F extends string>(names: readonly F[], prefix = ""): ListParams<F> {
  const route = useRoute();
  const path = routePath(route);
  const q = route.query;
  const key = (name: string) => `${prefix}${name}`;
  const filters = Object.fromEntries(names.map((n) => [n, q.get(key(n)) ?? ""])) as Record<F, string>;
  const cursor = q.get(key("cursor")) || undefined;
  const limit = parseLimit(q.get(key("limit")));
  const listKey = `${path}|${prefix}|${names.map((n) => filters[n]).join("|")}|${limit}`;
  const here =
    cursor === undefined ? { previous: undefined, number: 1 } : visited.get(`${listKey}|${cursor}`);

  const go = (changes: Record<string, string | undefined>, replace: boolean) => {
    const next: Record<string, string | undefined> = Object.fromEntries(q.entries());
    for (const [k, v] of Object.entries(changes)) next[key(k)] = v || undefined;
    navigate(path, next, { replace });
  };
  return {
    filters,
    filtered: names.some((n) => filters[n] !== ""),
    cursor,
    limit,
    pageNumber: here?.number,
    setFilters: (changes) => go({ ...changes, cursor: undefined }, true),
    reset: () => go(Object.fromEntries([...names, "cursor", "limit"].map((n) => [n, undefined])), true),
    setLimit: (n) => go({ limit: n === DEFAULT_PAGE_SIZE ? undefined : String(n), cursor: undefined }, true),
    next: (nextCursor) => {
      visited.set(`${listKey}|${nextCursor}`, {
        previous: cursor,
        number: here?.number === undefined ? undefined : here.number + 1,
      });
      go({ cursor: nextCursor }, false);
    },
    previous: here && cursor !== undefined ? () => go({ cursor: here.previous }, false) : undefined,
    first: cursor !== undefined ? () => go({ cursor: undefined }, false) : undefined,
  };
}

/**
 * A text filter that updates the address a moment after typing stops (one history entry, one
 * request), and follows the address when it changes elsewhere (Back, Reset).
 */
export function useDebouncedFilter(value: string, commit: (v: string) => void, delayMs = 400) {
  const [text, setText] = useState(value);
  const commitRef = useRef(commit);
  commitRef.current = commit;
  const typed = useRef(false);
  useEffect(() => {
    if (!typed.current) setText(value);
  }, [value]);
  useEffect(() => {
    if (!typed.current) return;
    const t = setTimeout(() => {
      typed.current = false;
      if (text.trim() !== value) commitRef.current(text.trim());
    }, delayMs);
    return () => clearTimeout(t);
  }, [text, value, delayMs]);
  return {
    value: text,
    onChange: (v: string) => {
      typed.current = true;
      setText(v);
    },
  };
}

/**
 * Previous / Next with the position and whether more follows. Buttons that cannot be used are
 * aria-disabled rather than disabled, so keyboard focus is not lost when the last page arrives.
 */
export function Pager<F extends string>({
  params,
  count,
  nextCursor,
  what,
}: {
  params: ListParams<F>;
  count: number;
  nextCursor: string | null;
  what: string;
}) {
  const { pageNumber, limit } = params;
  const start = pageNumber === undefined ? undefined : (pageNumber - 1) * limit + 1;
  const position =
    count === 0
      ? "No entries on this page"
      : start === undefined
        ? `${count} ${what} on a later page`
        : `${what[0]?.toUpperCase()}${what.slice(1)} ${start}–${start + count - 1}`;
  const back = params.previous ?? params.first;
  // A list that fits on one page needs no buttons, only the count.
  if (!back && !nextCursor) {
    return count === 0 ? null : <p className="pager-status">{`All ${what} shown (${count}).`}</p>;
  }
  return (
    <nav className="pager" aria-label={`Pages of ${what}`}>
      <button
        type="button"
        className="secondary"
        aria-disabled={!back}
        onClick={() => back?.()}
        title={params.previous ? undefined : params.first ? "Back to the first page" : undefined}
      >
        {params.previous || !params.first ? "← Previous" : "← First page"}
      </button>
      <span className="pager-status" aria-live="polite">
        {position}
        {pageNumber !== undefined && ` · page ${pageNumber}`} ·{" "}
        {nextCursor ? <strong>more available</strong> : "end of the list"}
      </span>
      <button
        type="button"
        className="secondary"
        aria-disabled={!nextCursor}
        onClick={() => nextCursor && params.next(nextCursor)}
      >
        Next →
      </button>
      <label className="inline">
        Per page
        <select value={params.limit} onChange={(e) => params.setLimit(Number(e.target.value))}>
          {(PAGE_SIZES.some((n) => n === limit) ? PAGE_SIZES : [limit, ...PAGE_SIZES]).map((n) => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </select>
      </label>
    </nav>
  );
}

/** The filter form's "Show all" button, only while a filter or a position is set. */
export function ResetFilters<F extends string>({ params }: { params: ListParams<F> }): ReactNode {
  if (!params.filtered && !params.cursor && params.limit === DEFAULT_PAGE_SIZE) return null;
  return (
    <button type="button" className="secondary" onClick={params.reset}>
      Clear filters
    </button>
  );
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/**
 * A day filter from the address (YYYY-MM-DD, the browser's own time zone) as the API's ISO time:
 * the day's start, or with `end` the next day's start (so "to" includes the whole day). Throws a
 * readable error for a hand-edited address that is not a day.
 */
export function dayToIso(day: string, name: string, end = false): string | undefined {
  if (day === "") return undefined;
  const at = DAY.test(day) ? new Date(`${day}T00:00:00`) : new Date(Number.NaN);
  if (Number.isNaN(at.getTime()))
    throw new Error(`The address's ${name} "${day}" is not a day (YYYY-MM-DD).`);
  if (end) at.setDate(at.getDate() + 1);
  return at.toISOString();
}
