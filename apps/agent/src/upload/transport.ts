import { readFile } from "node:fs/promises";
import { BulwarkError } from "@bulwark/errors";
import {
  type AbortRequest,
  AGENT_CHANNEL_OPTIONS,
  BackupServiceClient,
  BackupServiceService,
  type BeginSessionRequest,
  type BeginSessionResponse,
  type CommitRequest,
  type CommitResponse,
  fromServiceError,
  isServiceError,
  protocolMetadata,
  type QueryMissingRequest,
  type QueryMissingResponse,
  type UploadChunksResponse,
} from "@bulwark/protocol";
import type { ChannelCredentials, ClientDuplexStream } from "@grpc/grpc-js";
import { invalidArgument } from "../errors.js";
import { sslCredentials } from "../identity/tls.js";

/**
 * Unary calls (BeginSession, QueryMissing, Abort) answer in milliseconds; a minute without an
 * answer means the path is dead, and the session's reconnect logic takes over.
 */
export const UNARY_DEADLINE_MS = 60_000;

/**
 * An upload stream whose oldest unacked batch has waited this long is treated as dead: a server
 * stores a 4 MiB batch in milliseconds, and keepalive PINGs cannot see a stream that is stuck while
 * its connection is fine. Failing it makes the session reconnect and re-ask.
 */
export const DEFAULT_ACK_TIMEOUT_MS = 120_000;

/**
 * The agent's channel options, without grpc-js's retry buffer: the session retries (re-asking
 * what is missing) on its own, while grpc-js would keep every streamed message until its per-call
 * buffer (1 MB) fills and report such writes done before the transport took them, which hides
 * them from backpressure. A zero buffer commits each call at its first message.
 */
const UPLOAD_CHANNEL_OPTIONS = {
  ...AGENT_CHANNEL_OPTIONS,
  "grpc.enable_retries": 0,
  "grpc.per_rpc_retry_buffer_size": 0,
};

/** The agent's mTLS material, by path (written by enrollment; until then provided by the operator). */
export interface TlsFiles {
  /** The Bulwark CA that signed the server certificate: the only trusted root. */
  caPath: string;
  /** This agent's client certificate (subject CN = agent ID) and its private key. */
  certPath: string;
  keyPath: string;
}

export async function mtlsCredentials(files: TlsFiles): Promise<ChannelCredentials> {
  const [ca, cert, key] = await Promise.all([
    readFile(files.caPath),
    readFile(files.certPath),
    readFile(files.keyPath),
  ]);
  return sslCredentials(ca, key, cert);
}

/** `https://host:port` (or bare `host:port`) → the gRPC target `host:port`. */
export function grpcTarget(serverUrl: string): string {
  if (!serverUrl.includes("://")) return serverUrl;
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    throw invalidArgument(`server URL ${serverUrl} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "grpcs:") {
    throw invalidArgument(`server URL ${serverUrl} must use https (mTLS); there is no plaintext listener`);
  }
  const host = url.hostname.includes(":") ? `[${url.hostname}]` : url.hostname;
  return `${host}:${url.port || "443"}`;
}

/** Any failure of a call as a BulwarkError (the server's code, or a transport classification). */
export function asBulwarkError(err: unknown): BulwarkError {
  if (err instanceof BulwarkError) return err;
  if (isServiceError(err)) return fromServiceError(err);
  return new BulwarkError("BULWARK_PROTO_TRANSPORT_FAILED", (err as Error)?.message ?? String(err), {
    cause: err,
  });
}

/**
 * One channel to a server's BackupService, with the protocol header on every call and every
 * failure mapped to a BulwarkError. A new connection is made after a failure (the session layer
 * decides when), so a half-dead HTTP/2 session is never reused.
 */
export class BackupConnection {
  private readonly client: BackupServiceClient;

  constructor(target: string, creds: ChannelCredentials) {
    this.client = new BackupServiceClient(target, creds, UPLOAD_CHANNEL_OPTIONS);
  }

  private unary<Req, Res>(
    method: (
      req: Req,
      md: ReturnType<typeof protocolMetadata>,
      opts: { deadline: Date },
      cb: (e: unknown, r: Res) => void,
    ) => unknown,
    req: Req,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(
        this.client,
        req,
        protocolMetadata(),
        { deadline: new Date(Date.now() + UNARY_DEADLINE_MS) },
        (err: unknown, res: Res) => (err ? reject(asBulwarkError(err)) : resolve(res)),
      );
    });
  }

  beginSession(req: BeginSessionRequest): Promise<BeginSessionResponse> {
    return this.unary(this.client.beginSession as never, req);
  }

  queryMissing(req: QueryMissingRequest): Promise<QueryMissingResponse> {
    return this.unary(this.client.queryMissing as never, req);
  }

  abort(req: AbortRequest): Promise<unknown> {
    return this.unary(this.client.abort as never, req);
  }

  /**
   * An UploadChunks stream that takes requests already serialized (batch-codec.ts writes them in
   * the chunk workers), so grpc-js sends the bytes it is given instead of encoding them again.
   */
  openUploadStream(ackTimeoutMs = DEFAULT_ACK_TIMEOUT_MS): UploadStream {
    const method = BackupServiceService.uploadChunks;
    const call = this.client.makeBidiStreamRequest<Buffer, UploadChunksResponse>(
      method.path,
      (serialized: Buffer) => serialized,
      method.responseDeserialize,
      protocolMetadata(),
    );
    return new UploadStream(call, ackTimeoutMs);
  }

  /** Streams a commit (header, parts, finish) with the stream's backpressure; resolves with the restore point. */
  async commit(messages: AsyncIterable<CommitRequest>): Promise<CommitResponse> {
    let settle!: { resolve: (r: CommitResponse) => void; reject: (e: BulwarkError) => void };
    const result = new Promise<CommitResponse>((resolve, reject) => {
      settle = { resolve, reject };
    });
    const call = this.client.commit(protocolMetadata(), (err, res) =>
      err ? settle.reject(asBulwarkError(err)) : settle.resolve(res),
    );
    let failed = false;
    result.catch(() => {
      failed = true;
    });
    try {
      for await (const message of messages) {
        if (failed) break;
        if (!call.write(message)) await waitDrain(call, result);
      }
      call.end();
    } catch (err) {
      call.cancel();
      throw err;
    }
    return result;
  }

  close(): void {
    this.client.close();
  }
}

/** Resolves on 'drain', or rejects when the call fails first (so a dead call never hangs us). */
function waitDrain(call: NodeJS.EventEmitter, failure: Promise<unknown>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = () => {
      call.off("drain", done);
      resolve();
    };
    call.on("drain", done);
    failure.then(done, (e) => {
      call.off("drain", done);
      reject(e);
    });
  });
}

interface PendingBatch {
  resolve: (ack: UploadChunksResponse) => void;
  reject: (err: BulwarkError) => void;
}

/**
 * One UploadChunks stream. `write` resolves once the stream can take more (HTTP/2 and grpc-js
 * backpressure) and hands back a promise of the batch's ack (the batch is durable on the server).
 * A failed stream fails every unacked batch; the session layer then reconnects and re-queries.
 */
export class UploadStream {
  private readonly pending = new Map<number, PendingBatch>();
  private failure: BulwarkError | undefined;
  private readonly failed: Promise<never>;
  private rejectFailed!: (e: BulwarkError) => void;
  private pendingBytesTotal = 0;
  private readonly sizes = new Map<number, number>();
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    private readonly call: ClientDuplexStream<Buffer, UploadChunksResponse>,
    private readonly ackTimeoutMs = DEFAULT_ACK_TIMEOUT_MS,
  ) {
    this.failed = new Promise<never>((_, reject) => {
      this.rejectFailed = reject;
    });
    this.failed.catch(() => {});
    call.on("data", (ack: UploadChunksResponse) => {
      const p = this.pending.get(ack.batchSeq);
      if (!p)
        return this.fail(
          new BulwarkError("BULWARK_PROTO_MALFORMED", `ack for unknown batch ${ack.batchSeq}`),
        );
      this.pending.delete(ack.batchSeq);
      this.pendingBytesTotal -= this.sizes.get(ack.batchSeq) ?? 0;
      this.sizes.delete(ack.batchSeq);
      this.armWatchdog();
      p.resolve(ack);
    });
    call.on("error", (err) => this.fail(asBulwarkError(err)));
    call.on("end", () => {
      if (this.pending.size)
        this.fail(
          new BulwarkError("BULWARK_PROTO_TRANSPORT_FAILED", "upload stream ended with unacked batches"),
        );
    });
  }

  /** Payload bytes written but not yet acked: the pipeline sends to the least loaded stream. */
  get pendingBytes(): number {
    return this.pendingBytesTotal;
  }

  get broken(): boolean {
    return this.failure !== undefined;
  }

  /** Still accepting batches: neither failed nor half-closed. */
  get writable(): boolean {
    return this.failure === undefined && !this.ended;
  }

  private ended = false;

  /** (Re)starts the ack timer while batches are pending; stops it when none are. */
  private armWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = undefined;
    if (this.pending.size === 0 || this.failure) return;
    this.watchdog = setTimeout(
      () =>
        this.fail(
          new BulwarkError("BULWARK_PROTO_TRANSPORT_FAILED", `no ack within ${this.ackTimeoutMs} ms`),
        ),
      this.ackTimeoutMs,
    );
    // Not unref'd: while acks are awaited, this timer may be all that keeps the process alive. Under
    // load, the TCP-cut e2e test caught Node's HTTP/2 session with its socket not being read, writes
    // done and batches unacked: the dropped connection went unseen until a keepalive PING (~80 s),
    // and with nothing else pending the event loop ran dry and the agent ended mid-upload.
  }

  private fail(err: BulwarkError): void {
    if (this.failure) return;
    if (this.watchdog) clearTimeout(this.watchdog);
    this.failure = err;
    this.rejectFailed(err);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.call.cancel();
  }

  /**
   * Writes one serialized UploadChunksRequest (`batchSeq` is the one inside it). Resolves once
   * grpc-js has sent it (framed copy handed to HTTP/2), so the caller holds at most one batch per
   * stream in the gRPC layer; the promise it returns settles with the batch's ack.
   */
  async write(
    batch: { batchSeq: number; bytes: Buffer },
    payloadBytes: number,
  ): Promise<{ acked: Promise<UploadChunksResponse> }> {
    if (this.failure) throw this.failure;
    const { batchSeq } = batch;
    const acked = new Promise<UploadChunksResponse>((resolve, reject) => {
      this.pending.set(batchSeq, { resolve, reject });
    });
    acked.catch(() => {});
    this.sizes.set(batchSeq, payloadBytes);
    this.pendingBytesTotal += payloadBytes;
    if (this.pending.size === 1) this.armWatchdog();
    const written = new Promise<void>((resolve) => {
      this.call.write(batch.bytes, () => resolve());
    });
    await Promise.race([written, this.failed]);
    return { acked };
  }

  /** Half-closes after the last batch: the server acks what it holds and ends the stream. */
  end(): void {
    if (this.ended || this.failure) return;
    this.ended = true;
    this.call.end();
  }

  cancel(): void {
    this.fail(new BulwarkError("BULWARK_PROTO_TRANSPORT_FAILED", "upload stream cancelled"));
  }
}
