// A small hash router: the server serves one index.html, so every console address lives after "#".
import { useEffect, useState } from "react";

export interface Route {
  /** Path segments after "#/", e.g. ["machines", "<id>"]. */
  segments: string[];
  query: URLSearchParams;
}

function parse(hash: string): Route {
  const raw = hash.replace(/^#\/?/, "");
  const [path = "", qs = ""] = raw.split("?");
  return {
    segments: path.split("/").filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(qs),
  };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(window.location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parse(window.location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

export function href(path: string, query?: Record<string, string | undefined>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v) params.set(k, v);
  const qs = params.toString();
  return `#${path}${qs ? `?${qs}` : ""}`;
}

/**
 * Goes to a console address. `replace` swaps the current history entry (filter edits, so Back
 * leaves the page instead of undoing keystrokes) and tells every useRoute about it, because
 * replaceState fires no hashchange.
 */
export function navigate(
  path: string,
  query?: Record<string, string | undefined>,
  opts: { replace?: boolean } = {},
): void {
  const target = href(path, query);
  if (opts.replace) {
    window.history.replaceState(window.history.state, "", target);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    window.location.hash = target;
  }
}

/** The path part of a route ("/machines/<id>"), to build addresses on the same page. */
export function routePath(route: Route): string {
  return `/${route.segments.map(encodeURIComponent).join("/")}`;
}
