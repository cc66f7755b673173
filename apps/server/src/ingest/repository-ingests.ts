import { IngestSession, type Repository } from "@bulwark/repository";

// The repository side of each open backup session on this node: an IngestSession, whose session
// record and heartbeat make the session a GC root (docs/repository-format.md, GC), and which
// builds the restore point at commit. It lives in memory only: after a restart, or on another
// node, it is opened again on the session's next call; chunks already uploaded are durable and
// in the chunk index, so nothing is lost with it.

export interface IngestTarget {
  sessionId: string;
  repo: Repository;
  /** Restore points of one volume share the name (prune applies retention per name). */
  name: string;
  volumeSize: number;
  chunkSize: number;
  labels: Record<string, string>;
}

export class RepositoryIngests {
  private readonly open = new Map<string, Promise<IngestSession>>();
  private readonly committing = new Set<string>();

  /** Claims the session for one commit at a time on this node; false if one is running. */
  beginCommit(sessionId: string): boolean {
    if (this.committing.has(sessionId)) return false;
    this.committing.add(sessionId);
    return true;
  }

  isCommitting(sessionId: string): boolean {
    return this.committing.has(sessionId);
  }

  endCommit(sessionId: string): void {
    this.committing.delete(sessionId);
  }

  /** The session's IngestSession, opened if this node has none. */
  ensure(target: IngestTarget): Promise<IngestSession> {
    let entry = this.open.get(target.sessionId);
    if (!entry) {
      entry = this.openNew(target);
      this.open.set(target.sessionId, entry);
      entry.catch(() => this.open.delete(target.sessionId));
    }
    return entry;
  }

  /**
   * A fresh IngestSession for a commit attempt, so a failed attempt leaves nothing behind. The new
   * record is written before the old one is removed: the session is a GC root throughout.
   */
  async replace(target: IngestTarget): Promise<IngestSession> {
    const old = this.open.get(target.sessionId);
    const fresh = this.openNew(target);
    this.open.set(target.sessionId, fresh);
    fresh.catch(() => {
      if (this.open.get(target.sessionId) === fresh) this.open.delete(target.sessionId);
    });
    const session = await fresh;
    if (old) await old.then((s) => s.abort()).catch(() => undefined);
    return session;
  }

  /** Ends the repository ingest (abort, expiry, failed commit); its chunks stay for reuse. */
  async abort(sessionId: string): Promise<void> {
    const entry = this.open.get(sessionId);
    this.open.delete(sessionId);
    if (entry) await entry.then((s) => s.abort()).catch(() => undefined);
  }

  /** The session committed: the IngestSession removed its own record. */
  forget(sessionId: string): void {
    this.open.delete(sessionId);
  }

  /** Session IDs with an ingest on this node. */
  ids(): string[] {
    return [...this.open.keys()];
  }

  /** Shutdown: ends every ingest here; the catalog sessions stay OPEN and resume on any node. */
  async closeAll(): Promise<void> {
    await Promise.all(this.ids().map((id) => this.abort(id)));
  }

  private openNew(t: IngestTarget): Promise<IngestSession> {
    return IngestSession.open(t.repo, {
      name: t.name,
      volumeSize: t.volumeSize,
      chunkSize: t.chunkSize,
      labels: t.labels,
    });
  }
}
