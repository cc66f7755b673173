import { BulwarkError } from "@bulwark/errors";
import {
  type BeginSessionRequest,
  type BeginSessionResponse,
  ChunkIdAlgorithm,
  type CommitRequest,
  type CommitResponse,
  DEFAULT_UPLOAD_BATCH_BYTES,
  DEFAULT_UPLOAD_STREAMS,
  INITIAL_RECONNECT_BACKOFF_MS,
  MAX_INDEX_PART_IDS,
  MAX_QUERY_IDS,
  MAX_RECONNECT_BACKOFF_MS,
  MAX_UPLOAD_BATCH_BYTES,
  type UploadChunksResponse,
} from "@bulwark/protocol";
import type { ChannelCredentials } from "@grpc/grpc-js";
import { agentError } from "../errors.js";
import { BackupConnection, type UploadStream } from "./transport.js";

/** Errors after which the same work can succeed on a new connection (and, if need be, a new session). */
const RETRYABLE = new Set<string>(["BULWARK_PROTO_TRANSPORT_FAILED", "BULWARK_PROTO_SESSION_NOT_FOUND"]);

export function isRetryable(err: unknown): boolean {
  return err instanceof BulwarkError && RETRYABLE.has(err.code);
}

/**
 * How long the agent keeps reconnecting before the backup fails: a server restart or a network
 * blip is minutes at most; after this the job fails and the scheduler's next run starts over
 * (cheaply: the chunks already stored are not sent again).
 */
export const DEFAULT_RECONNECT_GIVE_UP_MS = 10 * 60_000;

/** What a resumed or new session is told, and what survives a crash of the agent (persisted). */
export interface SessionState {
  jobId: string;
  sessionId: string;
  resumeToken: Buffer;
}

export interface SessionOptions {
  target: string;
  credentials: ChannelCredentials;
  request: Omit<BeginSessionRequest, "resumeToken">;
  /** A token from an earlier run of the same job (persisted across an agent crash). */
  resumeToken?: Buffer;
  streams?: number;
  giveUpMs?: number;
  /** Called whenever a session is opened or resumed, so its token can be persisted. */
  onSession?: (state: SessionState, response: BeginSessionResponse) => Promise<void> | void;
  /** Logged reconnects, for the job log and tests. */
  onReconnect?: (attempt: number, error: BulwarkError) => void;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * A backup session that survives its connection: on a transport failure every in-flight call of
 * the current generation fails, one caller runs `recover`, which reconnects with backoff and
 * resumes the session by its token (or opens a new one for the same job when the server lost it);
 * the others wait for that and retry, re-asking QueryMissing so nothing stored is sent again.
 */
export class UploadSession {
  private connection: BackupConnection | undefined;
  private streamsOpen: UploadStream[] = [];
  private tailStreams: UploadStream[] = [];
  private tail = false;
  private recovering: Promise<void> | undefined;
  private state: SessionState | undefined;
  private first: BeginSessionResponse | undefined;
  private nextBatch = 1;
  /** Incremented by every reconnect; work started under an older generation must retry. */
  generation = 0;
  reconnects = 0;

  constructor(private readonly opts: SessionOptions) {}

  /** Opens (or resumes) the session. The first response carries the chunk-ID key and limits. */
  async begin(): Promise<BeginSessionResponse> {
    this.connection = new BackupConnection(this.opts.target, this.opts.credentials);
    const res = await this.beginOn(this.connection, this.opts.resumeToken);
    if (
      res.chunkIdScheme?.algorithm !== ChunkIdAlgorithm.CHUNK_ID_ALGORITHM_HMAC_SHA256 ||
      res.chunkIdScheme.key.length !== 32
    ) {
      throw agentError(
        "BULWARK_PROTO_MALFORMED",
        "the server's chunk-ID scheme is not HMAC-SHA256 with a 32-byte key",
        {
          algorithm: res.chunkIdScheme?.algorithm,
        },
      );
    }
    this.first = res;
    return res;
  }

  private async beginOn(conn: BackupConnection, token: Buffer | undefined): Promise<BeginSessionResponse> {
    let res: BeginSessionResponse;
    try {
      res = await conn.beginSession({ ...this.opts.request, resumeToken: token ?? Buffer.alloc(0) });
    } catch (err) {
      // A token the server no longer knows (session expired or lost): start a new one for the job.
      if (token?.length && err instanceof BulwarkError && err.code === "BULWARK_PROTO_SESSION_NOT_FOUND") {
        res = await conn.beginSession({ ...this.opts.request, resumeToken: Buffer.alloc(0) });
      } else throw err;
    }
    this.state = {
      jobId: this.opts.request.jobId,
      sessionId: res.sessionId,
      resumeToken: Buffer.from(res.resumeToken),
    };
    await this.opts.onSession?.(this.state, res);
    return res;
  }

  private get live(): { conn: BackupConnection; state: SessionState } {
    if (!this.state) throw agentError("BULWARK_GENERAL_INTERNAL", "session not begun");
    // Between connections (a reconnect is running): retryable, the caller waits for the reconnect.
    if (!this.connection)
      throw new BulwarkError("BULWARK_PROTO_TRANSPORT_FAILED", "reconnecting to the server");
    return { conn: this.connection, state: this.state };
  }

  get sessionId(): string {
    return this.live.state.sessionId;
  }

  get idKey(): Buffer {
    return Buffer.from(this.first!.chunkIdScheme!.key);
  }

  get limits(): { batchBytes: number; queryIds: number; indexPartIds: number } {
    const res = this.first!;
    // Stay within both what the server announced and what this agent was built for.
    const pick = (announced: number, ours: number, max: number) =>
      Math.max(1, Math.min(announced || ours, ours, max));
    return {
      batchBytes: pick(res.maxBatchBytes, DEFAULT_UPLOAD_BATCH_BYTES, MAX_UPLOAD_BATCH_BYTES),
      queryIds: pick(res.maxQueryIds, MAX_QUERY_IDS, MAX_QUERY_IDS),
      indexPartIds: pick(res.maxIndexPartIds, MAX_INDEX_PART_IDS, MAX_INDEX_PART_IDS),
    };
  }

  /** Positions (ascending) of the IDs the repository lacks. */
  async queryMissing(ids: Buffer[]): Promise<number[]> {
    const { conn, state } = this.live;
    return (await conn.queryMissing({ sessionId: state.sessionId, ids })).missing;
  }

  /** Batch numbers are unique in the session across streams and reconnects (a resent batch gets a new one). */
  nextBatchSeq(): number {
    return this.nextBatch++;
  }

  /** The least loaded writable upload stream, opening up to `streams` of them on this connection. */
  private stream(): UploadStream {
    const { conn } = this.live;
    this.streamsOpen = this.streamsOpen.filter((s) => s.writable);
    const wanted = this.opts.streams ?? DEFAULT_UPLOAD_STREAMS;
    if (this.streamsOpen.length < wanted) {
      const s = conn.openUploadStream();
      this.streamsOpen.push(s);
      return s;
    }
    let best = this.streamsOpen[0]!;
    for (const s of this.streamsOpen) if (s.pendingBytes < best.pendingBytes) best = s;
    return best;
  }

  /**
   * Writes one batch. After `finishWriting` (the reader has nothing more to read) each batch goes
   * on a stream of its own that is half-closed at once: a server may hold its last acks until the
   * next batch or the half-close arrives (bulwark-server does not, but the protocol allows it), and
   * at the tail of a backup no next batch comes.
   */
  async writeBatch(
    batch: { batchSeq: number; bytes: Buffer },
    bytes: number,
  ): Promise<{ acked: Promise<UploadChunksResponse> }> {
    if (!this.tail) return this.stream().write(batch, bytes);
    const s = this.live.conn.openUploadStream();
    this.tailStreams.push(s);
    const written = await s.write(batch, bytes);
    s.end();
    return written;
  }

  /** No more groups will be read: half-close the streams so every batch on them gets its ack. */
  finishWriting(): void {
    this.tail = true;
    for (const s of this.streamsOpen.splice(0)) s.end();
  }

  /**
   * Called by work that failed with a retryable error under `generation`. The first caller
   * reconnects; later callers (and callers from an older generation) just wait for it.
   */
  async recover(generation: number, cause: BulwarkError): Promise<void> {
    if (generation !== this.generation) return;
    this.recovering ??= this.reconnect(cause).finally(() => {
      this.recovering = undefined;
    });
    await this.recovering;
  }

  private async reconnect(cause: BulwarkError): Promise<void> {
    const sleep = this.opts.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
    const giveUp = Date.now() + (this.opts.giveUpMs ?? DEFAULT_RECONNECT_GIVE_UP_MS);
    for (const s of [...this.streamsOpen.splice(0), ...this.tailStreams.splice(0)]) s.cancel();
    this.connection?.close();
    this.connection = undefined;
    let backoff = INITIAL_RECONNECT_BACKOFF_MS / 2;
    let last = cause;
    for (let attempt = 1; ; attempt++) {
      this.opts.onReconnect?.(attempt, last);
      await sleep(backoff);
      const conn = new BackupConnection(this.opts.target, this.opts.credentials);
      try {
        const res = await this.beginOn(conn, this.state?.resumeToken);
        if (!Buffer.from(res.chunkIdScheme?.key ?? []).equals(this.idKey)) {
          conn.close();
          throw agentError(
            "BULWARK_PROTO_MALFORMED",
            "the server's chunk-ID key changed during the backup; its chunk IDs are void",
          );
        }
        this.connection = conn;
        this.generation++;
        this.reconnects++;
        return;
      } catch (err) {
        conn.close();
        if (!isRetryable(err) || Date.now() + backoff > giveUp) throw err;
        last = err as BulwarkError;
        backoff = Math.min(backoff * 2, MAX_RECONNECT_BACKOFF_MS);
      }
    }
  }

  /**
   * Runs `work` until it succeeds, recovering the session after each retryable failure. `work`
   * must be safe to repeat (it re-queries what is missing rather than assuming).
   */
  async retrying<T>(work: () => Promise<T>): Promise<T> {
    for (;;) {
      const generation = this.generation;
      try {
        return await work();
      } catch (err) {
        if (!isRetryable(err)) throw err;
        await this.recover(generation, err as BulwarkError);
      }
    }
  }

  /**
   * Commits (idempotent on the server, so a commit cut mid-way is simply sent again). A retry can
   * find the server still finishing the cut attempt (one commit per session at a time:
   * SESSION_BUSY); that is waited out with the same backoff.
   */
  async commit(messages: () => AsyncIterable<CommitRequest>): Promise<CommitResponse> {
    const sleep = this.opts.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
    const giveUp = Date.now() + (this.opts.giveUpMs ?? DEFAULT_RECONNECT_GIVE_UP_MS);
    let backoff = INITIAL_RECONNECT_BACKOFF_MS / 2;
    for (;;) {
      try {
        return await this.retrying(() => this.live.conn.commit(messages()));
      } catch (err) {
        const busy = err instanceof BulwarkError && err.code === "BULWARK_PROTO_SESSION_BUSY";
        if (!busy || Date.now() + backoff > giveUp) throw err;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_RECONNECT_BACKOFF_MS);
      }
    }
  }

  /** Ends the upload streams of the current connection (after the last ack). */
  endStreams(): void {
    for (const s of this.streamsOpen.splice(0)) s.end();
    this.tailStreams.length = 0;
  }

  async abort(reason: string): Promise<void> {
    if (!this.connection || !this.state) return;
    await this.connection.abort({ sessionId: this.state.sessionId, reason }).catch(() => {});
  }

  close(): void {
    for (const s of [...this.streamsOpen.splice(0), ...this.tailStreams.splice(0)]) s.cancel();
    this.connection?.close();
    this.connection = undefined;
  }
}
