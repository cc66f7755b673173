// Agents' LogRecords go to the server's log, at a bounded rate per stream: a looping agent must
// not be able to flood the server's log (and whatever ships it). A token bucket allows bursts
// (a failing job logs a few lines at once) and a steady trickle; what is dropped is counted and
// reported with the next record that passes.

/** Records a stream may log in a burst. */
export const LOG_BURST = 20;
/** Sustained records per minute per stream (one every two seconds). */
export const LOG_RECORDS_PER_MINUTE = 30;

export class LogLimiter {
  private tokens: number;
  private last: number;
  private dropped = 0;

  constructor(
    private readonly now: () => number,
    private readonly burst = LOG_BURST,
    private readonly perMinute = LOG_RECORDS_PER_MINUTE,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Whether a record may be logged now, and how many were dropped since the last one that was. */
  take(): { allowed: boolean; droppedBefore: number } {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.perMinute) / 60_000);
    this.last = t;
    if (this.tokens < 1) {
      this.dropped++;
      return { allowed: false, droppedBefore: 0 };
    }
    this.tokens -= 1;
    const droppedBefore = this.dropped;
    this.dropped = 0;
    return { allowed: true, droppedBefore };
  }
}
