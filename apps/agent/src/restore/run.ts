import { createHash, type Hash } from "node:crypto";
import { stat, statfs } from "node:fs/promises";
import { BulwarkError } from "@bulwark/errors";
import {
  CHUNK_ID_BYTES,
  ChunkIdAlgorithm,
  chunkCount,
  INITIAL_RECONNECT_BACKOFF_MS,
  isValidChunkSize,
  MAX_RECONNECT_BACKOFF_MS,
  type RestoreHeader,
  RestoreMode,
  type RestoreStats,
} from "@bulwark/protocol";
import type { ChannelCredentials } from "@grpc/grpc-js";
import { type CommandRunner, ProcessCommandRunner } from "../command-runner.js";
import { agentError } from "../errors.js";
import { grpcTarget } from "../upload/transport.js";
import { RestoreStream } from "./connection.js";
import { DecodePool } from "./decode-pool.js";
import { type DataExtents, dataExtents, dataPieces, inHole as liesInHole } from "./extents.js";
import { type GptRelocation, relocateBackupGpt } from "./gpt.js";
import { haveRuns, ResponsePump, remainder, TargetScan } from "./pipeline.js";
import { checkForeignTarget, checkTargetSize, type OpenTarget, openTarget } from "./target.js";
import { beginVerify, finishVerify, type VerifiedChunk } from "./verify.js";

// A volume restore on the agent (docs/agent.md, "Restore"; protocol in docs/protocol.md §3):
// check the target, Start (or resume) the job's restore stream, check the target against the
// Header (size, foreign source), then keep a window of Want ranges in flight — for a delta
// restore each Want carries the IDs of what the target holds there, hashed on worker threads —
// verify every chunk before writing it at its offset, write zeros only where the target is not
// already zero, fsync before a range counts as a resume point, and send Complete and half-close
// once everything is written, synced and checked. A cut connection resumes from the last synced
// range.

/** Chunks per Want: a quarter of the window, so four ranges overlap (server reads while we write). */
const WANTS_PER_WINDOW = 4;
/** Buffers per pwritev (Linux IOV_MAX is 1024). */
const MAX_IOVECS = 512;
/** Chunks per zero check of a full restore (one worker read each). */
const ZERO_SCAN_CHUNKS = 64;
/** Written bytes between two fsyncs (resume points): a cut re-sends at most this much. */
const SYNC_EVERY_BYTES = 64 * 1024 * 1024;
/** Whole-disk restores write this much of the disk first: MBR, GPT header and entries, boot gap. */
const PARTITION_TABLE_BYTES = 1024 * 1024;
/** How long the agent keeps reconnecting before the restore fails (as for backups). */
export const DEFAULT_RESTORE_GIVE_UP_MS = 10 * 60_000;

export type RestoreModeName = "full" | "delta";

export interface RestoreProgress {
  /** Volume bytes covered so far (written, zeroed or found unchanged). */
  bytesDone: number;
  volumeBytes: number;
  /** Payload bytes received from the server. */
  bytesFetched: number;
  /** Bytes written to the target (data and zeros). */
  bytesWritten: number;
}

export interface RestoreOptions {
  /** The server's agent listener: `https://host:port` or `host:port`. */
  serverUrl: string;
  /** This agent's mTLS credentials (mtlsCredentials() from its enrolled certificate). */
  credentials: ChannelCredentials;
  /** Extra channel options (tests: TLS target name override). */
  channelOptions?: Record<string, string | number>;
  /** RestoreCommand.job_id: the RESTORE job the server issued to this agent. */
  jobId: string;
  /** RestoreCommand.target_path: a block device or a regular file. */
  targetPath: string;
  mode: RestoreModeName;
  /** RestoreCommand.allow_foreign_target: permit a target that is not the backup's source. */
  allowForeignTarget: boolean;
  /** RestoreCommand.whole_disk: partition table first; GPT backup moved to the end of a larger disk. */
  wholeDisk: boolean;
  onProgress?: (p: RestoreProgress) => void;
  /** Aborting stops writing (after syncing what was written) with BULWARK_CONTROL_JOB_CANCELLED. */
  signal?: AbortSignal;
  /** First chunk to ask for (a resume index persisted by an earlier run of the same job); default 0. */
  resumeFromIndex?: number;
  /**
   * Called with each new resume index after an fsync, so a caller can persist it (awaited); with
   * 0 after a failed end-to-end check (nothing written may be skipped by a later attempt).
   */
  onResumePoint?: (index: number) => void | Promise<void>;
  /** RestoreCommand.restore_point_id: refuse a stream that describes another restore point. */
  expectedRestorePointId?: string;
  threads?: number;
  reconnectGiveUpMs?: number;
  onReconnect?: (attempt: number, error: BulwarkError) => void;
  sleep?: (ms: number) => Promise<void>;
  runner?: CommandRunner;
}

export interface RestoreReport {
  jobId: string;
  restorePointId: string;
  target: string;
  mode: RestoreModeName;
  /** True when the target was not the backup's source (and the caller allowed it). */
  foreignTarget: boolean;
  volumeBytes: number;
  /** Payload bytes received: what the restore cost on the wire (delta: ≈ the changed chunks). */
  bytesFetched: number;
  bytesWritten: number;
  chunksReceived: number;
  chunksZeroWritten: number;
  /** Zero chunks the target already held as zeros (full mode checks before writing). */
  chunksZeroSkipped: number;
  /** Chunks the server skipped because the target already had them (delta). */
  chunksUnchanged: number;
  /** The server's Finished stats of the last (completing) stream. */
  serverStats: RestoreStats | undefined;
  /** Resume indexes of reconnects, in order (empty when the stream never broke). */
  resumedFrom: number[];
  gpt: GptRelocation | undefined;
  /**
   * True when the written volume was checked end to end: the SHA-256 over the chunk IDs it now
   * holds (received, zero, or found unchanged) equals the restore point's index digest. False
   * when the restore resumed from an index persisted by an earlier process (that prefix was not
   * seen), or the server had no digest.
   */
  indexVerified: boolean;
  durationMs: number;
}

/** What the daemon (control stream) calls for a RestoreCommand. */
export type RestoreRunner = (opts: RestoreOptions) => Promise<RestoreReport>;

const RETRYABLE = new Set<string>(["BULWARK_PROTO_TRANSPORT_FAILED"]);
/** The canonical index's entry for a zero chunk (protocol §4). */
const ZERO_ID = Buffer.alloc(CHUNK_ID_BYTES);

interface Range {
  start: number;
  count: number;
  /** Chunks of the range written (data or zeros) so far. */
  delivered: Set<number>;
  /** Per chunk: the ID the target holds once the range is done (null = zeros, undefined = not yet known). */
  ids: (Buffer | null | undefined)[];
}

/** Runs one restore job to completion (resuming over cut connections) or throws a BulwarkError. */
export const runRestore: RestoreRunner = async (opts) => {
  const started = Date.now();
  const target = await openTarget(opts.targetPath);
  const state = new RestoreState(opts, target);
  let report: RestoreReport;
  try {
    report = await state.run(started);
  } finally {
    await state.close();
  }
  // After our O_EXCL handle is closed: the kernel refuses to rescan a disk someone holds.
  if (opts.wholeDisk && target.kind === "block")
    await rereadPartitions(opts.runner ?? new ProcessCommandRunner(), target);
  return report;
};

class RestoreState {
  private header: RestoreHeader | undefined;
  private pool: DecodePool | undefined;
  private foreign = false;
  /**
   * True when the target is a regular file with no allocated block on a filesystem that counts
   * blocks exactly: it reads as zeros everywhere, and stays so wherever the restore point is zero
   * (only its data chunks are written), so a full restore need not read its zero chunks.
   */
  private targetAllZero = false;
  /** A file target's data extents at the start of the current stream (undefined: read it all). */
  private extents: DataExtents | undefined;
  private total = 0;
  private chunkSize = 0;
  private volumeSize = 0;
  /** Every chunk below this is written and synced. */
  private durable: number;
  /** Every chunk below this is written (maybe not synced). */
  private completed: number;
  private unsynced = 0;
  private readonly counters = {
    bytesFetched: 0,
    bytesWritten: 0,
    chunksReceived: 0,
    chunksZeroWritten: 0,
    chunksZeroSkipped: 0,
    chunksUnchanged: 0,
  };
  private readonly resumedFrom: number[] = [];
  /** Canonical index digest of chunks [0, completed) and its copy at the durable point. */
  private digest: Hash | undefined;
  private digestAtDurable: Hash | undefined;
  private gpt: GptRelocation | undefined;
  private serverStats: RestoreStats | undefined;
  private zeroBuffer: Buffer = Buffer.alloc(0);
  /** The fsync under way (startSync), if any, and the failure of the last one not yet raised. */
  private syncing: Promise<void> | undefined;
  private syncFailure: unknown;

  constructor(
    private readonly opts: RestoreOptions,
    private readonly target: OpenTarget,
  ) {
    this.durable = opts.resumeFromIndex ?? 0;
    this.completed = this.durable;
  }

  async run(started: number): Promise<RestoreReport> {
    const sleep = this.opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const giveUpMs = this.opts.reconnectGiveUpMs ?? DEFAULT_RESTORE_GIVE_UP_MS;
    let failingSince: number | undefined;
    let backoff = INITIAL_RECONNECT_BACKOFF_MS / 2;
    let attempt = 0;
    while (true) {
      this.checkCancelled();
      const progressBefore = this.durable;
      try {
        await this.stream();
        break;
      } catch (err) {
        const e =
          err instanceof BulwarkError ? err : agentError("BULWARK_GENERAL_INTERNAL", String(err), {}, err);
        if (e.code === "BULWARK_RESTORE_VERIFY_FAILED") {
          // What was written does not add up to the restore point: no resume index may vouch for
          // it, so the job's next attempt starts at chunk 0 and checks everything again (after a
          // background fsync, which would save its own index).
          await this.settleSync().catch(() => {});
          await this.opts.onResumePoint?.(0);
          throw e;
        }
        // Whatever was written is made durable, so the resume skips it.
        await this.sync().catch(() => {});
        if (!RETRYABLE.has(e.code) || this.opts.signal?.aborted) throw e;
        if (this.durable > progressBefore) {
          failingSince = undefined;
          backoff = INITIAL_RECONNECT_BACKOFF_MS / 2;
        }
        failingSince ??= Date.now();
        if (Date.now() + backoff - failingSince > giveUpMs) throw e;
        attempt++;
        this.opts.onReconnect?.(attempt, e);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_RECONNECT_BACKOFF_MS);
        this.resumedFrom.push(this.durable);
      }
    }
    return {
      jobId: this.opts.jobId,
      restorePointId: this.header!.restorePointId,
      target: this.opts.targetPath,
      mode: this.opts.mode,
      foreignTarget: this.foreign,
      volumeBytes: this.volumeSize,
      ...this.counters,
      serverStats: this.serverStats,
      resumedFrom: this.resumedFrom,
      gpt: this.gpt,
      indexVerified: this.digest !== undefined,
      durationMs: Date.now() - started,
    };
  }

  async close(): Promise<void> {
    await this.pool?.close();
    await this.target.handle.close().catch(() => {});
  }

  private checkCancelled(): void {
    if (this.opts.signal?.aborted) {
      throw agentError("BULWARK_CONTROL_JOB_CANCELLED", `restore job ${this.opts.jobId} was cancelled`, {
        jobId: this.opts.jobId,
        resumeFromIndex: this.durable,
      });
    }
  }

  /** One Restore call, from Start (at the durable index) to Finished. */
  private async stream(): Promise<void> {
    const stream = new RestoreStream(
      grpcTarget(this.opts.serverUrl),
      this.opts.credentials,
      this.opts.channelOptions,
    );
    try {
      await stream.send({
        message: {
          $case: "start",
          value: {
            jobId: this.opts.jobId,
            mode: this.opts.mode === "delta" ? RestoreMode.RESTORE_MODE_DELTA : RestoreMode.RESTORE_MODE_FULL,
            resumeFromIndex: this.durable,
          },
        },
      });
      const first = await stream.next();
      if (first?.message?.$case !== "header") {
        throw agentError("BULWARK_PROTO_MALFORMED", "the server did not answer start with a header");
      }
      await this.accept(first.message.value);
      // The digest continues from the durable point (a reconnect re-requests what came after it).
      if (this.durable === 0 && !this.digestAtDurable) this.digestAtDurable = createHash("sha256");
      this.digest = this.digestAtDurable?.copy();
      await this.transfer(stream);
      this.checkDigest();
      await this.finishTarget();
      // Only Complete lets the server finish the job: a call we cancel (any failure above) can
      // reach it as a half-close.
      await stream.send({
        message: { $case: "complete", value: { indexVerified: this.digest !== undefined } },
      });
      stream.end();
      const last = await stream.next();
      if (last?.message?.$case !== "finished") {
        throw agentError("BULWARK_PROTO_MALFORMED", "the server did not finish the restore");
      }
      this.serverStats = last.message.value.stats;
      if ((await stream.next()) !== undefined) {
        throw agentError("BULWARK_PROTO_MALFORMED", "the server sent more after finished");
      }
    } finally {
      stream.close();
    }
  }

  /** The first Header is checked against the target; a resumed stream's must describe the same point. */
  private async accept(header: RestoreHeader): Promise<void> {
    if (this.header) {
      const same =
        header.restorePointId === this.header.restorePointId &&
        header.geometry?.sizeBytes === this.volumeSize &&
        header.geometry?.chunkSize === this.chunkSize &&
        Buffer.compare(header.chunkIdScheme?.key ?? Buffer.alloc(0), this.header.chunkIdScheme!.key) === 0;
      if (!same)
        throw agentError("BULWARK_PROTO_MALFORMED", "the resumed restore describes another restore point");
      this.header = header; // the window may differ on another server node
      return;
    }
    const g = header.geometry;
    const scheme = header.chunkIdScheme;
    if (!g || !isValidChunkSize(g.chunkSize) || g.sizeBytes < 1 || !Number.isSafeInteger(g.sizeBytes)) {
      throw agentError("BULWARK_PROTO_GEOMETRY_INVALID", "the restore header's geometry is invalid");
    }
    if (header.totalChunks !== chunkCount(g.sizeBytes, g.chunkSize)) {
      throw agentError(
        "BULWARK_PROTO_GEOMETRY_INVALID",
        "the restore header's chunk count disagrees with its geometry",
      );
    }
    if (scheme?.algorithm !== ChunkIdAlgorithm.CHUNK_ID_ALGORITHM_HMAC_SHA256 || scheme.key.length !== 32) {
      throw agentError(
        "BULWARK_PROTO_MALFORMED",
        "the restore's chunk-ID scheme is not HMAC-SHA256 with a 32-byte key",
      );
    }
    if (this.durable > header.totalChunks) {
      throw agentError("BULWARK_AGENT_INVALID_ARGUMENT", `resume index ${this.durable} is beyond the volume`);
    }
    if (this.opts.expectedRestorePointId && header.restorePointId !== this.opts.expectedRestorePointId) {
      throw agentError(
        "BULWARK_PROTO_MALFORMED",
        `the server streams restore point ${header.restorePointId}, the command named ${this.opts.expectedRestorePointId}`,
      );
    }
    checkTargetSize(this.target, g.sizeBytes);
    this.foreign = (await checkForeignTarget(this.target, header, this.opts.allowForeignTarget)).foreign;
    if (this.opts.wholeDisk && this.target.kind === "block" && (await isPartition(this.target))) {
      throw new BulwarkError(
        "BULWARK_RESTORE_TARGET_INVALID",
        `a whole-disk restore needs a whole disk; ${this.opts.targetPath} is a partition`,
        { details: { target: this.opts.targetPath } },
      );
    }
    this.targetAllZero = await unallocatedFile(this.target);
    this.header = header;
    this.total = header.totalChunks;
    this.chunkSize = g.chunkSize;
    this.volumeSize = g.sizeBytes;
    this.pool = new DecodePool(
      Buffer.from(scheme.key),
      this.opts.threads ? { threads: this.opts.threads } : {},
    );
  }

  private lengthOf(i: number): number {
    return Math.min(this.chunkSize, this.volumeSize - i * this.chunkSize);
  }

  /** Wants in flight up to the window; every response verified and written; ranges retire in order. */
  private async transfer(stream: RestoreStream): Promise<void> {
    const window = Math.max(1, this.header!.windowChunks);
    const wantSize = Math.max(1, Math.floor(window / WANTS_PER_WINDOW));
    // Whole disk: the partition table region is written and synced before anything else is asked.
    const fence =
      this.opts.wholeDisk && this.durable === 0
        ? Math.min(this.total, Math.ceil(PARTITION_TABLE_BYTES / this.chunkSize))
        : 0;
    const outstanding: Range[] = [];
    let next = this.durable;
    let requested = 0;
    const responses = new ResponsePump(stream, this.total, (chunks) =>
      beginVerify(this.pool!, { volumeSize: this.volumeSize, chunkSize: this.chunkSize }, chunks),
    );
    // A file target's holes are not read (listed again per stream: earlier ones wrote data).
    this.extents =
      this.target.kind === "file" && !this.targetAllZero && (await fiemapExact(this.target))
        ? await dataExtents(this.opts.runner ?? new ProcessCommandRunner(), this.target.realPath)
        : undefined;
    // Delta: the target is read and hashed ahead of the Wants, on the workers.
    const have =
      this.opts.mode === "delta"
        ? new TargetScan(
            this.pool!,
            this.target.handle.fd,
            next,
            this.total,
            this.chunkSize,
            (i) => this.lengthOf(i),
            (from, to) => (this.extents ? dataPieces(this.extents, from, to) : undefined),
          )
        : undefined;
    try {
      while (true) {
        this.checkCancelled();
        this.raiseSyncFailure();
        while (next < this.total && requested < window && !(next >= fence && this.durable < fence)) {
          const limit = next < fence ? fence : this.total;
          const count = Math.min(wantSize, window - requested, limit - next);
          const ids = have ? await have.take(next, count) : undefined;
          await stream.send({
            message: { $case: "want", value: { startIndex: next, count, have: ids ? haveRuns(ids) : [] } },
          });
          outstanding.push({
            start: next,
            count,
            delivered: new Set(),
            ids: ids ?? new Array<undefined>(count).fill(undefined),
          });
          requested += count;
          next += count;
        }
        if (outstanding.length === 0) return;
        const entry = await responses.next();
        const m = entry.message;
        if (!m) throw agentError("BULWARK_PROTO_TRANSPORT_FAILED", "the server ended the restore early");
        if (entry.error !== undefined) throw entry.error;
        const expected = (i: number) =>
          outstanding.some((r) => i >= r.start && i < r.start + r.count && !r.delivered.has(i));
        const deliver = (i: number, id: Buffer | null) => {
          const r = outstanding.find((o) => i >= o.start && i < o.start + o.count)!;
          r.delivered.add(i);
          r.ids[i - r.start] = id;
        };
        switch (m.$case) {
          case "chunks": {
            const verified = await finishVerify(entry.pending!, expected);
            this.counters.bytesFetched += entry.pending!.payloadBytes;
            await this.writeVerified(verified);
            // Written: the workers decode later messages into these buffers.
            this.pool!.recycle((await entry.pending!.decoded).buffers);
            for (const v of verified) {
              for (const i of v.indexes) {
                deliver(i, v.id);
                this.counters.chunksReceived++;
              }
            }
            break;
          }
          case "zeros": {
            const { startIndex, count } = m.value;
            for (let i = startIndex; i < startIndex + count; i++) {
              if (!expected(i))
                throw agentError("BULWARK_RESTORE_CHUNK_INVALID", `zero chunk ${i} was not asked for`, {
                  index: i,
                });
            }
            await this.writeZeroRun(startIndex, count);
            for (let i = startIndex; i < startIndex + count; i++) deliver(i, null);
            break;
          }
          case "rangeDone": {
            const head = outstanding[0];
            if (!head || m.value.startIndex !== head.start || m.value.count !== head.count) {
              throw agentError(
                "BULWARK_PROTO_MALFORMED",
                "range done does not match the oldest range asked for",
              );
            }
            const skipped = head.count - head.delivered.size;
            // A full restore has nothing to skip; a delta restore skips only what the server says
            // the target already holds (and it can only know that from our have runs).
            if (skipped !== m.value.chunksUnchanged || (this.opts.mode === "full" && skipped > 0)) {
              throw agentError(
                "BULWARK_RESTORE_CHUNK_INVALID",
                `range ${head.start}+${head.count} is incomplete`,
                {
                  start: head.start,
                  missing: skipped,
                },
              );
            }
            this.counters.chunksUnchanged += skipped;
            for (const id of head.ids) this.digest?.update(id ?? ZERO_ID);
            outstanding.shift();
            requested -= head.count;
            this.completed = head.start + head.count;
            // The partition table region is synced before anything else is asked; elsewhere a
            // sync runs in the background while later ranges are written.
            if (this.completed === fence) await this.sync();
            else if (this.unsynced >= SYNC_EVERY_BYTES) this.startSync();
            this.report();
            break;
          }
          default:
            throw agentError("BULWARK_PROTO_MALFORMED", `unexpected ${m.$case} during a restore`);
        }
      }
    } finally {
      have?.stop();
    }
  }

  /**
   * Writes a verified message: chunks that are neighbours on the target go out as one pwritev,
   * wherever their decoded bytes are.
   */
  private async writeVerified(verified: VerifiedChunk[]): Promise<void> {
    const pieces = verified
      .flatMap((v) => v.indexes.map((i) => ({ offset: i * this.chunkSize, data: v.data })))
      .sort((a, b) => a.offset - b.offset);
    let k = 0;
    while (k < pieces.length) {
      const first = pieces[k]!;
      const run: Buffer[] = [first.data];
      let end = first.offset + first.data.length;
      let j = k + 1;
      for (; j < pieces.length && run.length < MAX_IOVECS && pieces[j]!.offset === end; j++) {
        run.push(pieces[j]!.data);
        end += pieces[j]!.data.length;
      }
      await this.writeAt(run, first.offset);
      k = j;
    }
  }

  /**
   * A run of zero chunks. Delta: the server sends only those the target does not hold as zeros,
   * so they are written. Full: the target is read first (on the workers, in large reads) and
   * only chunks that are not already zero are written, so a new sparse file stays sparse and a
   * trimmed disk is not rewritten.
   */
  private async writeZeroRun(start: number, count: number): Promise<void> {
    const lengths = Array.from({ length: count }, (_, k) => this.lengthOf(start + k));
    let zero: boolean[];
    if (this.opts.mode === "full" && this.targetAllZero) zero = new Array<boolean>(count).fill(true);
    else if (this.opts.mode === "full") {
      // Split over the workers, ZERO_SCAN_CHUNKS at a time, all in flight at once; holes unread.
      const parts: Promise<boolean[]>[] = [];
      for (let k = 0; k < count; ) {
        const hole = this.inHole(start + k);
        let n = 1;
        while (n < ZERO_SCAN_CHUNKS && k + n < count && this.inHole(start + k + n) === hole) n++;
        if (hole) {
          parts.push(Promise.resolve(new Array<boolean>(n).fill(true)));
          k += n;
          continue;
        }
        parts.push(
          this.pool!.zeroTarget(this.target.handle.fd, (start + k) * this.chunkSize, lengths.slice(k, k + n)),
        );
        k += n;
      }
      zero = (await Promise.all(parts)).flat();
    } else if (this.extents) {
      await this.zeroData(start, count);
      return;
    } else zero = new Array<boolean>(count).fill(false);
    let k = 0;
    while (k < count) {
      if (zero[k]) {
        this.counters.chunksZeroSkipped++;
        k++;
        continue;
      }
      const run: Buffer[] = [];
      const first = k;
      for (; k < count && !zero[k] && run.length < MAX_IOVECS; k++) run.push(this.zeros(lengths[k]!));
      await this.writeAt(run, (start + first) * this.chunkSize);
      this.counters.chunksZeroWritten += run.length;
    }
  }

  /**
   * Delta, file target with known extents: zeros are written only over the data of the run (its
   * holes already read as zeros), so a chunk with a few blocks written into free space costs those
   * blocks, not a chunk of new allocation. The extents are the stream's start: only this chunk's
   * own delivery writes its range, and it has not happened yet.
   */
  private async zeroData(start: number, count: number): Promise<void> {
    const from = start * this.chunkSize;
    const to = Math.min(this.volumeSize, (start + count) * this.chunkSize);
    for (const [a, b] of dataPieces(this.extents!, from, to)) {
      const run: Buffer[] = [];
      for (let at = a; at < b; at += this.chunkSize) run.push(this.zeros(Math.min(this.chunkSize, b - at)));
      for (let k = 0; k < run.length; k += MAX_IOVECS)
        await this.writeAt(run.slice(k, k + MAX_IOVECS), a + k * this.chunkSize);
    }
    this.counters.chunksZeroWritten += count;
  }

  /** True when chunk i lies wholly in a hole of a file target (listed at the stream's start). */
  private inHole(i: number): boolean {
    if (!this.extents) return false;
    const start = i * this.chunkSize;
    return liesInHole(this.extents, start, start + this.lengthOf(i));
  }

  private zeros(length: number): Buffer {
    if (this.zeroBuffer.length < length) this.zeroBuffer = Buffer.alloc(length);
    return this.zeroBuffer.subarray(0, length);
  }

  /** The end-to-end check: what the target now holds is exactly the restore point's index. */
  private checkDigest(): void {
    const expected = this.header!.indexDigest;
    if (!this.digest || expected.length !== 32) {
      this.digest = undefined;
      return;
    }
    const got = this.digest.copy().digest();
    if (!got.equals(expected)) {
      throw agentError(
        "BULWARK_RESTORE_VERIFY_FAILED",
        "the restored volume does not match the restore point's index (chunks were skipped or misplaced)",
        { expected: Buffer.from(expected).toString("hex"), got: got.toString("hex") },
      );
    }
  }

  /** pwritev of `data` at `offset`, continued after a short write. */
  private async writeAt(data: Buffer[], offset: number): Promise<void> {
    const total = data.reduce((n, b) => n + b.length, 0);
    try {
      let done = 0;
      let rest = data;
      while (done < total) {
        const { bytesWritten } = await this.target.handle.writev(rest, offset + done);
        done += bytesWritten;
        if (done < total) rest = remainder(data, done);
      }
    } catch (err) {
      throw agentError(
        "BULWARK_RESTORE_WRITE_FAILED",
        `writing ${this.opts.targetPath} at ${offset} failed: ${(err as Error).message}`,
        { target: this.opts.targetPath, offset },
        err,
      );
    }
    this.counters.bytesWritten += total;
    this.unsynced += total;
  }

  /** Makes everything written so far durable, and waits for it. */
  private async sync(): Promise<void> {
    await this.settleSync();
    this.startSync();
    await this.settleSync();
  }

  /**
   * Starts an fsync of what is written so far without waiting for it: the ranges completed when
   * it started become the resume point once it succeeds. At most one runs at a time; a failure
   * is raised by the transfer loop or the next sync().
   */
  private startSync(): void {
    if (this.syncing) return;
    if (this.completed === this.durable && this.unsynced === 0) return;
    const completed = this.completed;
    const digest = this.digest?.copy();
    this.unsynced = 0;
    const p: Promise<void> = this.target.handle
      .sync()
      .then(async () => {
        this.digestAtDurable = digest;
        if (completed > this.durable) {
          this.durable = completed;
          await this.opts.onResumePoint?.(this.durable);
        }
      })
      .catch((err: unknown) => {
        this.syncFailure =
          err instanceof BulwarkError
            ? err
            : agentError("BULWARK_RESTORE_WRITE_FAILED", `syncing ${this.opts.targetPath} failed`, {}, err);
      })
      .finally(() => {
        if (this.syncing === p) this.syncing = undefined;
      });
    this.syncing = p;
  }

  /** Waits for a running sync and raises its failure. */
  private async settleSync(): Promise<void> {
    await this.syncing;
    this.raiseSyncFailure();
  }

  private raiseSyncFailure(): void {
    const failure = this.syncFailure;
    this.syncFailure = undefined;
    if (failure) throw failure;
  }

  private report(): void {
    this.opts.onProgress?.({
      bytesDone: Math.min(this.volumeSize, this.completed * this.chunkSize),
      volumeBytes: this.volumeSize,
      bytesFetched: this.counters.bytesFetched,
      bytesWritten: this.counters.bytesWritten,
    });
  }

  /** Everything written: sync, then (whole disk) move the GPT backup to a larger disk's end. */
  private async finishTarget(): Promise<void> {
    await this.sync();
    if (this.opts.wholeDisk && this.gpt === undefined) {
      try {
        this.gpt =
          this.target.size > this.volumeSize
            ? await relocateBackupGpt(this.target.handle, this.target.size)
            : { status: "already-at-end" };
      } catch (err) {
        throw agentError(
          "BULWARK_RESTORE_WRITE_FAILED",
          `moving the backup GPT of ${this.opts.targetPath} failed`,
          {},
          err,
        );
      }
    }
  }
}

/**
 * Filesystems whose st_blocks counts every allocated block at once, delayed allocation included
 * (ext4, XFS, btrfs, tmpfs). Others (ZFS, NFS) may report blocks late, so there a file with zero
 * blocks is not known to read as zeros.
 */
const EXACT_BLOCK_COUNT = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994]);

/** Filesystems whose FIEMAP lists every extent, delayed allocation included (ext4, XFS, btrfs). */
const EXACT_FIEMAP = new Set([0xef53, 0x58465342, 0x9123683e]);

async function fiemapExact(target: OpenTarget): Promise<boolean> {
  try {
    return EXACT_FIEMAP.has((await statfs(target.realPath)).type);
  } catch {
    return false;
  }
}

/** A regular file with no allocated block (a new sparse file), on such a filesystem. */
async function unallocatedFile(target: OpenTarget): Promise<boolean> {
  if (target.kind !== "file") return false;
  try {
    const [st, fs] = await Promise.all([target.handle.stat(), statfs(target.realPath)]);
    return st.blocks === 0 && EXACT_BLOCK_COUNT.has(fs.type);
  } catch {
    return false; // not known: the zero chunks are read
  }
}

async function isPartition(target: OpenTarget): Promise<boolean> {
  try {
    await stat(`/sys/dev/block/${target.device}/partition`);
    return true;
  } catch {
    return false;
  }
}

/** Tells the kernel about the new partition table (best effort: the data is written either way). */
async function rereadPartitions(runner: CommandRunner, target: OpenTarget): Promise<void> {
  await runner.run({ command: "blockdev", args: ["--rereadpt", target.realPath] }).catch(() => undefined);
}
