import { BulwarkError } from "@bulwark/errors";
import {
  AGENT_CHANNEL_OPTIONS,
  protocolMetadata,
  type RestoreRequest,
  type RestoreResponse,
  type RestoreServiceClient,
  RestoreServiceFastClient,
} from "@bulwark/protocol";
import type { ChannelCredentials, ClientDuplexStream } from "@grpc/grpc-js";
import { asBulwarkError } from "../upload/transport.js";

// One RestoreService.Restore call: writes with the stream's backpressure, reads responses one at
// a time (the call is paused while the agent verifies and writes what it has, so HTTP/2 flow
// control holds the server back), and turns every failure into a BulwarkError.

/** Responses buffered before the call is paused: one being handled, one ready. */
const READ_AHEAD_MESSAGES = 2;

/**
 * A response that has not arrived for this long means the path is dead (keepalive PINGs cannot
 * see a stream that is stuck while its connection is fine): fail and resume on a new connection.
 */
export const DEFAULT_RESPONSE_TIMEOUT_MS = 120_000;

export class RestoreStream {
  private readonly client: RestoreServiceClient;
  private readonly call: ClientDuplexStream<RestoreRequest, RestoreResponse>;
  private readonly queue: RestoreResponse[] = [];
  private failure: BulwarkError | undefined;
  private ended = false;
  private wake: (() => void) | undefined;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    target: string,
    credentials: ChannelCredentials,
    options: Record<string, string | number> = {},
    private readonly responseTimeoutMs = DEFAULT_RESPONSE_TIMEOUT_MS,
  ) {
    // Chunks payloads stay views of the received message, which a decode worker may then take.
    this.client = new RestoreServiceFastClient(target, credentials, { ...AGENT_CHANNEL_OPTIONS, ...options });
    this.call = this.client.restore(protocolMetadata());
    this.call.on("data", (m: RestoreResponse) => {
      this.queue.push(m);
      if (this.queue.length >= READ_AHEAD_MESSAGES) this.call.pause();
      this.notify();
    });
    this.call.on("error", (err) => this.fail(asBulwarkError(err)));
    this.call.on("end", () => {
      this.ended = true;
      this.notify();
    });
  }

  private notify(): void {
    this.wake?.();
    this.wake = undefined;
  }

  private arm(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(
      () =>
        this.fail(
          new BulwarkError(
            "BULWARK_PROTO_TRANSPORT_FAILED",
            `no restore data for ${this.responseTimeoutMs} ms`,
          ),
        ),
      this.responseTimeoutMs,
    );
    // Not unref'd: while a response is awaited, this timer keeps the process alive (see the
    // upload stream's ack watchdog: a dropped connection may go unseen until it fires).
  }

  private fail(err: BulwarkError): void {
    if (this.failure) return;
    this.failure = err;
    if (this.watchdog) clearTimeout(this.watchdog);
    this.call.cancel();
    this.notify();
  }

  /** The next response; undefined when the server ended the call with OK. */
  async next(): Promise<RestoreResponse | undefined> {
    while (true) {
      const m = this.queue.shift();
      if (m) {
        if (this.queue.length < READ_AHEAD_MESSAGES) this.call.resume();
        return m;
      }
      if (this.failure) throw this.failure;
      if (this.ended) return undefined;
      // Only while we wait: time the agent spends hashing, writing or syncing is not the server's.
      this.arm();
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      if (this.watchdog) clearTimeout(this.watchdog);
    }
  }

  async send(req: RestoreRequest): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.call.write(req)) return;
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        clearInterval(poll);
        this.call.off("drain", done);
        if (this.failure) reject(this.failure);
        else resolve();
      };
      // A failure while we wait for 'drain' must not leave us waiting forever.
      const poll = setInterval(() => this.failure && done(), 100);
      this.call.on("drain", done);
    });
  }

  /** Half-close: everything is written and synced. */
  end(): void {
    this.call.end();
  }

  /** Ends the call (if still open) and the channel. */
  close(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    if (!this.ended && !this.failure) {
      this.failure = new BulwarkError("BULWARK_PROTO_TRANSPORT_FAILED", "restore stream closed");
      this.call.cancel();
    }
    this.client.close();
  }
}
