import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * Every batch leaves multi-MiB garbage behind on the main thread (the batch's buffer and grpc-js's
 * framed copy of it). V8 collects ArrayBuffers only once external memory has grown ~64 MB since the
 * last GC, so that much dead payload sat in the agent's RSS on top of the live pipeline. A full
 * GC after every `everyBytes` (4 MiB) sent bounds it to about that much instead; the agent's JS
 * heap is small (~20 MB), so each collection costs a few milliseconds on a thread that mostly
 * waits for acks.
 */
export const DEFAULT_GC_EVERY_BYTES = 4 * 1024 * 1024;

type Collect = () => void;

let collect: Collect | null | undefined;

/** V8's gc(), exposed at run time (the agent is started as plain `node cli.js`, without flags). */
function collector(): Collect | null {
  if (collect === undefined) {
    try {
      setFlagsFromString("--expose-gc");
      collect = runInNewContext("gc") as Collect;
    } catch {
      collect = null; // a runtime that refuses: V8's own schedule applies, nothing breaks
    }
  }
  return collect;
}

export class GcPacer {
  private since = 0;
  private scheduled = false;

  constructor(private readonly everyBytes = DEFAULT_GC_EVERY_BYTES) {}

  /** Counts bytes whose buffers just became garbage; collects (on the next turn) when due. */
  released(bytes: number): void {
    this.since += bytes;
    if (this.since < this.everyBytes || this.scheduled) return;
    const gc = collector();
    if (!gc) return;
    this.since = 0;
    this.scheduled = true;
    // Next turn: the buffers just released may still be on the stack of the write callback.
    setImmediate(() => {
      this.scheduled = false;
      gc();
    });
  }
}
