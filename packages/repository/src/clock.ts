/** Time source, injected so tests can move time (GC grace, session staleness). */
export interface Clock {
  /** Milliseconds since the epoch, comparable with backend mtimes. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
