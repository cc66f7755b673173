import { stat } from "node:fs/promises";
import { agentError, invalidArgument } from "../errors.js";
import type { JournalEntry } from "./journal.js";
import { BaseSnapshot, type ProviderContext, type SnapshotProvider } from "./provider.js";

export interface FileProviderOptions {
  path: string;
}

/** A disk image file (VM disk, raw image). Whoever writes it must be stopped; we verify it did not change. */
export class FileProvider implements SnapshotProvider {
  readonly kind = "file" as const;

  constructor(
    private readonly ctx: ProviderContext,
    private readonly options: FileProviderOptions,
  ) {}

  async prepare(volumeKey: string): Promise<FileSnapshot> {
    const st = await stat(this.options.path).catch((e: unknown) => {
      throw agentError(
        "BULWARK_AGENT_SNAPSHOT_FAILED",
        `cannot stat ${this.options.path}: ${(e as Error).message}`,
      );
    });
    if (!st.isFile()) throw invalidArgument(`${this.options.path} is not a regular file`);
    const entry = await this.ctx.journal.add({
      provider: this.kind,
      volumeKey,
      retained: false,
      data: { path: this.options.path },
    });
    const snapshot = new FileSnapshot(this.ctx, entry.id, this.options.path, st.size, fingerprint(st));
    snapshot.start();
    return snapshot;
  }

  cleanupStale(entry: JournalEntry): Promise<void> {
    return cleanupStaleFile(this.ctx, entry);
  }
}

/** Nothing exists outside the journal for an image file. */
export async function cleanupStaleFile(ctx: ProviderContext, entry: JournalEntry): Promise<void> {
  await ctx.journal.remove(entry.id);
}

function fingerprint(st: { size: number; mtimeMs: number; ino: number; ctimeMs: number }): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

export class FileSnapshot extends BaseSnapshot {
  readonly provider = "file" as const;
  readonly consistency = "unchanged-file" as const;

  constructor(
    ctx: ProviderContext,
    journalId: string,
    readonly devicePath: string,
    readonly size: number,
    private readonly before: string,
  ) {
    super(ctx, journalId);
  }

  start(): void {
    this.track(`image file ${this.devicePath}`);
  }

  override async assertConsistent(): Promise<void> {
    const now = fingerprint(await stat(this.devicePath));
    if (now !== this.before) {
      throw agentError(
        "BULWARK_AGENT_SNAPSHOT_INCONSISTENT",
        `${this.devicePath} changed while it was being read`,
      );
    }
  }

  protected async doRelease(): Promise<void> {
    await this.ctx.journal.remove(this.journalId);
  }
}
