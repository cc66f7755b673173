// Loading with a deadline: every page shows what it waits for, says so when the server is slow,
// and turns into an error with a retry button when the request's own timeout fires.
import { type ReactNode, useCallback, useEffect, useState } from "react";
import { errorMessage, REQUEST_TIMEOUT_MS } from "../api/client";

/** `stale`: the data shown is the previous answer while a new one (next page, new filter) loads. */
export type Loaded<T> =
  | { state: "loading" }
  | { state: "error"; message: string }
  | { state: "ok"; data: T; stale?: boolean };

export function useLoad<T>(
  load: (signal: AbortSignal) => Promise<T>,
  deps: readonly unknown[],
): [Loaded<T>, () => void] {
  const [result, setResult] = useState<Loaded<T>>({ state: "loading" });
  const [generation, setGeneration] = useState(0);
  // biome-ignore lint/correctness/useExhaustiveDependencies: the caller lists what `load` reads
  useEffect(() => {
    const controller = new AbortController();
    setResult((r) => (r.state === "ok" ? { ...r, stale: true } : { state: "loading" }));
    // A load that throws before its first await (a bad filter in the address) is an error like any other.
    new Promise<T>((resolve) => resolve(load(controller.signal))).then(
      (data) => {
        if (!controller.signal.aborted) setResult({ state: "ok", data });
      },
      (err: unknown) => {
        if (!controller.signal.aborted) setResult({ state: "error", message: errorMessage(err) });
      },
    );
    return () => controller.abort();
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return [result, reload];
}

/** After this long a loading message says the server is slow (the request gives up later). */
const SLOW_MS = 3_000;

export function Waiting({ what }: { what: string }) {
  const [slow, setSlow] = useState(false);
  useEffect(() => {
    const t = setTimeout(() => setSlow(true), SLOW_MS);
    return () => clearTimeout(t);
  }, []);
  return (
    <p className="waiting" role="status">
      <span className="spinner" aria-hidden="true" /> Loading {what}…
      {slow && ` The server is slow; giving up after ${REQUEST_TIMEOUT_MS / 1000} s.`}
    </p>
  );
}

export function ErrorBox({ message, onRetry }: { message: string; onRetry?: () => void }) {
  return (
    <div className="error-box" role="alert">
      <p>{message}</p>
      {onRetry && (
        <button type="button" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Show<T>({
  loaded,
  what,
  onRetry,
  children,
}: {
  loaded: Loaded<T>;
  what: string;
  onRetry?: () => void;
  children: (data: T) => ReactNode;
}) {
  if (loaded.state === "loading") return <Waiting what={what} />;
  if (loaded.state === "error")
    return <ErrorBox message={`Could not load ${what}: ${loaded.message}`} onRetry={onRetry} />;
  return <>{children(loaded.data)}</>;
}

/** A button for a state-changing call: disabled while it runs, shows the error next to it. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const run = useCallback(async <T,>(action: () => Promise<T>): Promise<T | undefined> => {
    setBusy(true);
    setError(undefined);
    try {
      return await action();
    } catch (err) {
      setError(errorMessage(err));
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, run, clearError: () => setError(undefined) };
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}
