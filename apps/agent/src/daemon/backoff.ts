import { INITIAL_RECONNECT_BACKOFF_MS, MAX_RECONNECT_BACKOFF_MS } from "@bulwark/protocol";

// Reconnect delays: exponential from 1 s to 60 s with jitter, so that the agents of a server
// that restarts do not all come back in the same second.

export class Backoff {
  private attempt = 0;

  constructor(
    private readonly initialMs = INITIAL_RECONNECT_BACKOFF_MS,
    private readonly maxMs = MAX_RECONNECT_BACKOFF_MS,
    private readonly random: () => number = Math.random,
  ) {}

  /** The next delay: a random value in [½, 1] of min(max, initial × 2^attempt) ("equal jitter"). */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  /** After a stream that got as far as ServerHello: the next failure starts from the bottom again. */
  reset(): void {
    this.attempt = 0;
  }

  get max(): number {
    return this.maxMs;
  }
}
