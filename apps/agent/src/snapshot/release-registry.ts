/**
 * Process-wide list of things that must be undone before the agent exits: thaw a frozen
 * filesystem, remove a snapshot, close a device. Normal code paths release in `finally`; this
 * registry covers SIGTERM/SIGINT, when no `finally` runs.
 */
export interface Releasable {
  label: string;
  release(): Promise<void>;
}

export class ReleaseRegistry {
  private readonly entries = new Map<number, Releasable>();
  private next = 0;
  private installed = false;

  /** Returns the function that unregisters (call it once the thing is released normally). */
  register(label: string, release: () => Promise<void>): () => void {
    const id = this.next++;
    this.entries.set(id, { label, release });
    return () => {
      this.entries.delete(id);
    };
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

  /**
   * On SIGTERM/SIGINT: release everything, then exit with 128 + signal number as shells expect.
   * A second signal during the release is ignored so cleanup is not cut short.
   */
  installSignalHandlers(
    onFailure: (label: string, error: unknown) => void = (label, error) =>
      process.stderr.write(`bulwark-agent: releasing ${label} failed: ${String(error)}\n`),
  ): void {
    if (this.installed) return;
    this.installed = true;
    let releasing = false;
    const handler = (signal: NodeJS.Signals): void => {
      if (releasing) return;
      releasing = true;
      void this.releaseAll().then((failures) => {
        for (const f of failures) onFailure(f.label, f.error);
        process.exit(128 + (signal === "SIGINT" ? 2 : 15));
      });
    };
    process.on("SIGTERM", handler);
    process.on("SIGINT", handler);
  }
}

/** The agent process's registry. */
export const processReleases = new ReleaseRegistry();
