import { randomUUID } from "node:crypto";
import { mkdir, open, readFile, rename } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { ProviderKind } from "./kinds.js";

/**
 * On-disk record of every snapshot the agent has made and not yet removed. An entry is written
 * BEFORE the snapshot is created (so a kill between create and record cannot leak it) and deleted
 * after removal. `retained` entries are lvm-thin bases kept on purpose for the next thin_delta; any
 * other entry found at startup belongs to a killed run and is cleaned up.
 */
export interface JournalEntry {
  id: string;
  provider: ProviderKind;
  volumeKey: string;
  createdAt: string;
  retained: boolean;
  /** Provider-specific identity: vg/lv names, VSS shadow ID, mountpoint to thaw. */
  data: Record<string, string>;
}

interface JournalFile {
  version: 1;
  entries: JournalEntry[];
}

export class SnapshotJournal {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string) {}

  static inDirectory(stateDir: string): SnapshotJournal {
    return new SnapshotJournal(join(stateDir, "snapshots.json"));
  }

  async list(): Promise<JournalEntry[]> {
    return (await this.load()).entries;
  }

  add(entry: Omit<JournalEntry, "id" | "createdAt"> & { id?: string }): Promise<JournalEntry> {
    const full: JournalEntry = {
      id: entry.id ?? randomUUID(),
      createdAt: new Date().toISOString(),
      ...entry,
    };
    return this.mutate((file) => {
      file.entries.push(full);
      return full;
    });
  }

  update(id: string, patch: Partial<Pick<JournalEntry, "retained" | "data">>): Promise<void> {
    return this.mutate((file) => {
      const entry = file.entries.find((e) => e.id === id);
      if (entry) Object.assign(entry, patch, patch.data ? { data: { ...entry.data, ...patch.data } } : {});
    });
  }

  remove(id: string): Promise<void> {
    return this.mutate((file) => {
      file.entries = file.entries.filter((e) => e.id !== id);
    });
  }

  /** Mutations are serialised and written atomically (temp + fsync + rename), so a kill leaves old or new. */
  private mutate<T>(change: (file: JournalFile) => T): Promise<T> {
    const run = this.chain.then(async () => {
      const file = await this.load();
      const result = change(file);
      await this.save(file);
      return result;
    });
    this.chain = run.catch(() => {});
    return run;
  }

  private async load(): Promise<JournalFile> {
    try {
      const parsed = JSON.parse(await readFile(this.path, "utf8")) as JournalFile;
      if (parsed.version === 1 && Array.isArray(parsed.entries)) return parsed;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        process.stderr.write(`bulwark-agent: snapshot journal ${this.path} unreadable, starting empty\n`);
      }
    }
    return { version: 1, entries: [] };
  }

  private async save(file: JournalFile): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp-${process.pid}`;
    const handle = await open(tmp, "w", 0o600);
    try {
      await handle.writeFile(JSON.stringify(file, null, 2));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, this.path);
    const dir = await open(dirname(this.path), "r");
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
