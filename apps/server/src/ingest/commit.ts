import type { CaptureMethod } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import {
  type CaptureStats,
  CHUNK_ID_BYTES,
  ChangeDetectionMethod,
  type CommitHeader,
  type CommitRequest,
  type CommitResponse,
  chunkCount,
  IndexDigest,
  type IndexPart,
  indexRunLength,
  MAX_INDEX_PART_IDS,
} from "@bulwark/protocol";
import { type IngestSession, idToHex, isZeroId } from "@bulwark/repository";
import type { AgentIdentity } from "../grpc/identity.js";
import type { OpenRepository } from "../repositories/registry.js";
import {
  type IngestContext,
  ingestTargetOf,
  ownSession,
  recordActivity,
  requireOpen,
  type SessionRow,
} from "./sessions.js";

// Commit: header, the complete index in contiguous parts, finish with the digest. Every
// referenced chunk is confirmed in the repository (the chunk file touched, not just the index
// row) while the parts stream in; only when all exist and the digest matches does the repository
// write the restore point, and then the catalog records the Backup and closes the session in one
// transaction. A failed commit leaves the session OPEN and nothing visible (docs/protocol.md §7).

/** Chunk confirmations in flight: each is a touch of the chunk file, so this bounds open I/O. */
const REFERENCE_CONCURRENCY = 32;
/** Unknown IDs named in the error's details (the count is always exact). */
const UNKNOWN_IDS_REPORTED = 16;

function malformed(message: string): BulwarkError {
  return new BulwarkError("BULWARK_PROTO_MALFORMED", message);
}

function indexInvalid(message: string, details: Record<string, unknown> = {}): BulwarkError {
  return new BulwarkError("BULWARK_PROTO_INDEX_INVALID", message, { details });
}

const METHODS: Record<number, CaptureMethod> = {
  [ChangeDetectionMethod.CHANGE_DETECTION_METHOD_CBT_THIN_DELTA]: "CBT",
  [ChangeDetectionMethod.CHANGE_DETECTION_METHOD_HASH_CACHE]: "BITMAP_HASH",
  [ChangeDetectionMethod.CHANGE_DETECTION_METHOD_FULL_READ]: "FULL_HASH",
};

interface Live {
  session: SessionRow;
  repository: OpenRepository;
  /** Null when replaying the commit of an already committed session (idempotent retry). */
  ingest: IngestSession | null;
  total: number;
  fanout: number;
}

export class CommitStream {
  private live: Live | undefined;
  private next = 0;
  private readonly digest = new IndexDigest();
  private readonly pending = new Set<Promise<void>>();
  private readonly unknown = new Set<string>();
  private unknownCount = 0;
  /** Every missing ID, to drop stale rows from the chunk index. */
  private readonly missing: Buffer[] = [];
  private failure: unknown;
  private finished = false;
  /** The session this stream holds the commit claim of. */
  private claimed: string | undefined;

  constructor(
    private readonly ctx: IngestContext,
    private readonly agent: AgentIdentity,
  ) {}

  /** One message of the stream, in order. */
  async message(req: CommitRequest): Promise<void> {
    if (this.finished) throw malformed("nothing may follow CommitFinish");
    const part = req.part;
    if (!part) throw malformed("a CommitRequest has none of header, index, finish");
    if (part.$case === "header") {
      if (this.live) throw malformed("the commit header comes once, first");
      this.live = await this.start(part.value);
      return;
    }
    if (!this.live) throw malformed("a commit starts with its header");
    if (part.$case === "index") {
      await this.indexPart(this.live, part.value);
      return;
    }
    this.finished = true;
    this.finishMessage = part.value;
  }

  private finishMessage: { indexDigest: Uint8Array; stats?: CaptureStats | undefined } | undefined;

  /** The client half-closed: commit, or fail leaving the session OPEN. */
  async end(): Promise<CommitResponse> {
    const live = this.live;
    if (!live || !this.finishMessage) throw malformed("a commit ends with CommitFinish");
    await this.drain();
    if (this.next !== live.total) {
      throw indexInvalid(`the index covers ${this.next} chunks; the header announced ${live.total}`, {
        covered: this.next,
        total: live.total,
      });
    }
    const digest = this.digest.digest();
    if (!digest.equals(Buffer.from(this.finishMessage.indexDigest))) {
      throw indexInvalid("the index digest does not match the index sent");
    }
    if (!live.ingest) return this.replayed(live.session, digest);
    if (this.unknownCount > 0) {
      // Rows whose file is gone must not keep answering "present" to QueryMissing.
      await live.repository.index.removed(this.missing);
      throw new BulwarkError(
        "BULWARK_PROTO_UNKNOWN_CHUNKS",
        `the index references ${this.unknownCount} chunks the repository does not have; upload them and commit again`,
        { details: { count: this.unknownCount, ids: [...this.unknown] } },
      );
    }
    return this.commit(live, digest, this.finishMessage.stats);
  }

  /** Ends a failed or cut commit: the attempt's repository ingest is dropped, the session stays OPEN. */
  async fail(): Promise<void> {
    await Promise.allSettled([...this.pending]);
    if (this.live?.ingest) await this.ctx.ingests.abort(this.live.session.id);
    this.release();
  }

  /** Lets the next commit of the session run; called once the stream is answered. */
  release(): void {
    if (this.claimed) this.ctx.ingests.endCommit(this.claimed);
    this.claimed = undefined;
  }

  private async start(header: CommitHeader): Promise<Live> {
    const session = await ownSession(this.ctx, this.agent, header.sessionId);
    const total = chunkCount(Number(session.volumeSize), session.chunkSize);
    if (header.totalChunks !== total) {
      throw indexInvalid(`total_chunks ${header.totalChunks} differs from the volume's ${total} chunks`, {
        totalChunks: header.totalChunks,
        expected: total,
      });
    }
    const { target, repository } = await ingestTargetOf(this.ctx, session);
    if (session.status === "COMMITTED") {
      return { session, repository, ingest: null, total, fanout: 0 };
    }
    requireOpen(this.ctx, session);
    // Two commits of one session would each rebuild the index into the same ingest.
    if (!this.ctx.ingests.beginCommit(session.id)) {
      throw new BulwarkError(
        "BULWARK_PROTO_SESSION_BUSY",
        `a commit of backup session ${session.id} is already running`,
        {
          details: { sessionId: session.id },
        },
      );
    }
    this.claimed = session.id;
    await recordActivity(this.ctx, session.id);
    const ingest = await this.ctx.ingests.replace(target);
    return { session, repository, ingest, total, fanout: ingest.geometry.fanout };
  }

  private async indexPart(live: Live, part: IndexPart): Promise<void> {
    if (part.startIndex !== this.next) {
      throw indexInvalid(`index part starts at ${part.startIndex}; the index continues at ${this.next}`, {
        startIndex: part.startIndex,
        expected: this.next,
      });
    }
    let ids = 0;
    let at = this.next;
    for (const run of part.runs) {
      const length = indexRunLength(run);
      if (run.run?.$case === "ids") ids += length;
      if (ids > MAX_INDEX_PART_IDS) throw malformed(`an index part holds at most ${MAX_INDEX_PART_IDS} IDs`);
      if (at + length > live.total) {
        throw new BulwarkError(
          "BULWARK_PROTO_OFFSET_OUT_OF_RANGE",
          `the index runs past the volume's ${live.total} chunks`,
          { details: { end: at + length, total: live.total } },
        );
      }
      at += length;
    }
    this.digest.update(part.runs);
    if (live.ingest) {
      let index = this.next;
      for (const run of part.runs) {
        const length = indexRunLength(run);
        if (run.run?.$case === "ids") {
          const bytes = Buffer.from(run.run.value);
          for (let k = 0; k < length; k++) {
            const id = bytes.subarray(k * CHUNK_ID_BYTES, (k + 1) * CHUNK_ID_BYTES);
            await this.reference(live.ingest, index + k, isZeroId(id) ? null : id);
          }
        } else {
          await this.zeroRun(live, index, length);
        }
        index += length;
      }
    }
    this.next = at;
    if (this.failure) throw this.failure;
    // A long commit is activity too: the session must not expire while its index streams in.
    if (live.ingest) await recordActivity(this.ctx, live.session.id);
  }

  /**
   * Zero chunks: a fresh ingest without a base reads unset entries as zero, and leaves it never
   * touches become the zero subtree. Only the leaves a zero run shares with other runs are set,
   * so they complete (and leave memory) instead of waiting for commit; a 1 TB empty run costs
   * nothing.
   */
  private async zeroRun(live: Live, start: number, length: number): Promise<void> {
    const end = start + length;
    const headEnd = Math.min(end, Math.ceil(start / live.fanout) * live.fanout);
    const tailStart = Math.max(headEnd, Math.floor(end / live.fanout) * live.fanout);
    for (let i = start; i < headEnd; i++) await this.reference(live.ingest!, i, null);
    if (end !== live.total && end % live.fanout !== 0) {
      for (let i = tailStart; i < end; i++) await this.reference(live.ingest!, i, null);
    }
  }

  /** Confirms and sets one entry, with at most REFERENCE_CONCURRENCY confirmations in flight. */
  private async reference(ingest: IngestSession, index: number, id: Buffer | null): Promise<void> {
    while (this.pending.size >= REFERENCE_CONCURRENCY) await Promise.race(this.pending);
    const task: Promise<void> = ingest
      .reference(index, id)
      .catch((err: unknown) => {
        if (err instanceof BulwarkError && err.code === "BULWARK_REPO_CHUNK_MISSING" && id) {
          if (this.unknown.size < UNKNOWN_IDS_REPORTED) this.unknown.add(idToHex(id));
          this.missing.push(Buffer.from(id));
          this.unknownCount++;
        } else this.failure ??= err;
      })
      .finally(() => this.pending.delete(task));
    this.pending.add(task);
  }

  private async drain(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
    if (this.failure) throw this.failure;
  }

  /** A retried commit of a committed session: the same restore point for the same index. */
  private async replayed(session: SessionRow, digest: Buffer): Promise<CommitResponse> {
    const backup = session.backupId
      ? await this.ctx.catalog.backup.findUnique({ where: { id: session.backupId } })
      : null;
    if (!backup?.indexDigest || !Buffer.from(backup.indexDigest).equals(digest)) {
      throw new BulwarkError(
        "BULWARK_PROTO_SESSION_CLOSED",
        `backup session ${session.id} was committed with a different index`,
        { details: { sessionId: session.id } },
      );
    }
    return { restorePointId: backup.id, newBytes: Number(session.newBytes) };
  }

  private async commit(live: Live, digest: Buffer, stats: CaptureStats | undefined): Promise<CommitResponse> {
    const { session, repository } = live;
    const point = await live.ingest!.commit();
    this.ctx.ingests.forget(session.id);
    const now = this.ctx.now();
    try {
      const backup = await this.ctx.catalog.$transaction(async (tx) => {
        const closed = await tx.backupSession.updateMany({
          where: { id: session.id, status: "OPEN" },
          data: { status: "COMMITTED", endedAt: now, lastActivityAt: now },
        });
        if (closed.count !== 1) {
          throw new BulwarkError(
            "BULWARK_PROTO_SESSION_CLOSED",
            `backup session ${session.id} ended while committing`,
            {
              details: { sessionId: session.id },
            },
          );
        }
        // After the session row is locked above: a cancel either landed before this read (the
        // commit is refused) or waits for this transaction and finds the session committed.
        const job = session.jobId
          ? await tx.job.findUnique({ where: { id: session.jobId }, select: { cancelRequestedAt: true } })
          : null;
        if (job?.cancelRequestedAt) {
          throw new BulwarkError("BULWARK_CONTROL_JOB_CANCELLED", `job ${session.jobId} was cancelled`, {
            details: { sessionId: session.id, jobId: session.jobId },
          });
        }
        const current = await tx.backupSession.findUniqueOrThrow({ where: { id: session.id } });
        const created = await tx.backup.create({
          data: {
            tenantId: this.agent.tenantId,
            agentId: session.agentId,
            volumeId: session.volumeId,
            repositoryId: session.repositoryId,
            jobId: session.jobId,
            capturedAt: session.startedAt,
            committedAt: now,
            volumeSize: session.volumeSize,
            chunkSize: session.chunkSize,
            // Chunk files written by the session's batches plus the index nodes the commit wrote.
            storedBytes: current.storedBytes + BigInt(point.stats.newStoredBytes),
            changedBytes: BigInt(stats?.bytesSentPlain ?? 0),
            method: METHODS[stats?.method ?? 0] ?? "FULL_HASH",
            indexRef: point.id,
            indexDigest: new Uint8Array(digest),
            previousId: session.previousId,
            stats: {
              repository: point.stats,
              capture: stats ? captureJson(stats) : null,
              chunksReceived: current.chunksReceived,
              bytesReceived: Number(current.bytesReceived),
              chunkStoredBytes: Number(current.storedBytes),
            },
          },
        });
        await tx.backupSession.update({ where: { id: session.id }, data: { backupId: created.id } });
        return { id: created.id, newBytes: current.newBytes };
      });
      return { restorePointId: backup.id, newBytes: Number(backup.newBytes) };
    } catch (err) {
      // The catalog did not take it: remove the point so nothing names an uncatalogued backup.
      await repository.repo.deletePoint(point.id).catch(() => undefined);
      throw err;
    }
  }
}

function captureJson(s: CaptureStats): Record<string, number | string> {
  return {
    method: ChangeDetectionMethod[s.method] ?? String(s.method),
    snapshotProvider: s.snapshotProvider,
    bytesRead: s.bytesRead,
    bytesHashed: s.bytesHashed,
    bytesSent: s.bytesSent,
    bytesSentPlain: s.bytesSentPlain,
    chunksTotal: s.chunksTotal,
    chunksZero: s.chunksZero,
    chunksSkipped: s.chunksSkipped,
    chunksSent: s.chunksSent,
    durationMs: s.durationMs,
  };
}
