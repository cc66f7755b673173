/**
 * Process-wide list of things that must be undone before the agent exits: thaw a frozen
 * filesystem, remove a snapshot, close a device. Normal code paths release in `finally`; this
 * registry covers SIGTERM/SIGINT, when no `finally` runs.
 */
export interface Releasable {
  label: string;
  release(): Promise<void>;
}

/**
 * How long a signal handler lets the drains (the daemon stopping its jobs: each releases its own
 * snapshot and runs its post hooks) take before it releases whatever is still registered itself.
 * Post hooks still running then are awaited through their registry entry (bounded by their timeout).
 */
export const DRAIN_TIMEOUT_MS = 30_000;
/** After the release, how long the drains still get to finish (record and send a job's result). */
const FINAL_GRACE_MS = 3_000;

export class ReleaseRegistry {
  private readonly entries = new Map<number, Releasable>();
  private readonly drains = new Map<number, () => Promise<void>>();
  private next = 0;
  private installed = false;
  private shutdown: Promise<never> | undefined;

  /** Returns the function that unregisters (call it once the thing is released normally). */
  register(label: string, release: () => Promise<void>): () => void {
    const id = this.next++;
    this.entries.set(id, { label, release });
    return () => {
      this.entries.delete(id);
    };
  }

  /**
   * Work to finish before a signal's release, e.g. stopping jobs so that they end through their own
   * paths (release, post hooks, a recorded result). Returns the function that removes it.
   */
  beforeRelease(drain: () => Promise<void>): () => void {
    const id = this.next++;
    this.drains.set(id, drain);
    return () => {
      this.drains.delete(id);
    };
  }

  /** Set once a signal is being handled: settles never (the handler ends the process). */
  get exiting(): Promise<never> | undefined {
    return this.shutdown;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Releases everything, newest first (a thaw registered after a snapshot runs before its removal). */
  async releaseAll(): Promise<{ label: string; error: unknown }[]> {
    const failures: { label: string; error: unknown }[] = [];
    const ids = [...this.entries.keys()].sort((a, b) => b - a);
    for (const id of ids) {
      const entry = this.entries.get(id);
      this.entries.delete(id);
      if (!entry) continue;
      try {
        await entry.release();
      } catch (error) {
        failures.push({ label: entry.label, error });
      }
    }
    return failures;
  }

  /** Runs the drains (at most `timeoutMs`), then releases everything left. */
  async drainAndReleaseAll(
    timeoutMs = DRAIN_TIMEOUT_MS,
    onFailure: (label: string, error: unknown) => void = () => {},
  ): Promise<void> {
    const drains = [...this.drains.values()];
    this.drains.clear();
    let done = false;
    const drained = Promise.all(
      drains.map((d) => d().catch((error: unknown) => onFailure("stopping the agent's jobs", error))),
    ).then(() => {
      done = true;
    });
    let timer: NodeJS.Timeout | undefined;
    const waitAtMost = (ms: number) =>
      Promise.race([
        drained,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, ms);
        }),
      ]).finally(() => clearTimeout(timer));
    await waitAtMost(timeoutMs);
    if (!done) onFailure("stopping the agent's jobs", new Error(`not done after ${timeoutMs} ms`));
    for (const f of await this.releaseAll()) onFailure(f.label, f.error);
    // A job whose post hooks were awaited just now (through their registry entry) still records
    // and sends its result: give it that moment.
    if (!done) await waitAtMost(Math.min(timeoutMs, FINAL_GRACE_MS));
  }

  /**
   * On SIGTERM/SIGINT: drain (see beforeRelease), release everything, then exit with 128 + signal
   * number as shells expect. The one handler decides the exit: whoever else sees the signal waits
   * for `exiting`. A second signal during all this is ignored so cleanup is not cut short.
   */
  installSignalHandlers(
    onFailure: (label: string, error: unknown) => void = (label, error) =>
      process.stderr.write(`bulwark-agent: releasing ${label} failed: ${String(error)}\n`),
  ): void {
    if (this.installed) return;
    this.installed = true;
    const handler = (signal: NodeJS.Signals): void => {
      if (this.shutdown) return;
      this.shutdown = this.drainAndReleaseAll(DRAIN_TIMEOUT_MS, onFailure).then(() =>
        process.exit(128 + (signal === "SIGINT" ? 2 : 15)),
      );
    };
    process.on("SIGTERM", handler);
    process.on("SIGINT", handler);
  }
}

/** The agent process's registry. */
export const processReleases = new ReleaseRegistry();
