import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * Every batch leaves multi-MiB garbage behind on the main thread (the batch's buffer and grpc-js's
 * framed copy of it). V8 collects ArrayBuffers only once external memory has grown ~64 MB since the
 * last GC, so that much dead payload sat in the agent's RSS on top of the live pipeline. Collecting
 * after every `everyBytes` (4 MiB) sent bounds it to about that much instead.
 *
 * A minor GC (scavenge) does it: both buffers are young (the batch arrives from a worker just
 * before it is sent, grpc-js frames its copy at the write, and a sent batch is detached into a new,
 * young ArrayBuffer), and a scavenge frees dead young ArrayBuffers' memory in ~1 ms, where the full
 * GC this used to force costs several ms and marks the whole heap (first in a wall-clock profile of
 * the main thread under load; the agent's CPU in A/B runs did not change measurably either way). A
 * buffer that outlived two scavenges (a slow write) is promoted and only a full GC frees it: one
 * runs every `fullEveryBytes` (64 MiB).
 */
export const DEFAULT_GC_EVERY_BYTES = 4 * 1024 * 1024;
export const DEFAULT_FULL_GC_EVERY_BYTES = 64 * 1024 * 1024;

type Collect = (options?: { type: "minor" | "major" }) => void;

let collect: Collect | null | undefined;

/**
 * The young generation stays at its initial size (1 MiB semi-spaces) in a process that uploads: V8
 * grows the semi-spaces up to 16 MiB each when allocation is busy, and they then sat mostly empty
 * (33.5 MB of new space committed, ~1 MB in use, at the peak of a 1 GiB bench backup; a grown
 * young generation never shrinks back, so this is set when the module loads, before the upload
 * allocates). More frequent scavenges of a young generation that mostly dies cost no measurable CPU
 * (A/B in docs/benchmarks.md, issue 4). It helps only if the young generation has not grown yet:
 * on a quiet machine it had grown to 16 MiB semi-spaces while the CLI's modules loaded, so cli.ts
 * imports this module first and the rest at run time (new space 2 MB after loading, not 16.8 MB).
 * In a quiet backup it still reached 8 MiB semi-spaces at the peak (cause not found).
 */
try {
  setFlagsFromString("--semi-space-growth-factor=1");
} catch {
  // a runtime that refuses: the young generation grows as V8 decides, nothing breaks
}

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
  private sinceFull = 0;
  private scheduled = false;
  /** Collections run so far (for tests). */
  readonly runs = { minor: 0, full: 0 };

  constructor(
    private readonly everyBytes = DEFAULT_GC_EVERY_BYTES,
    private readonly fullEveryBytes = DEFAULT_FULL_GC_EVERY_BYTES,
  ) {}

  /** Counts bytes whose buffers just became garbage; collects (on the next turn) when due. */
  released(bytes: number): void {
    this.since += bytes;
    if (this.since < this.everyBytes || this.scheduled) return;
    const gc = collector();
    if (!gc) return;
    this.sinceFull += this.since;
    this.since = 0;
    this.scheduled = true;
    // Next turn: the buffers just released may still be on the stack of the write callback.
    setImmediate(() => {
      this.scheduled = false;
      if (this.sinceFull >= this.fullEveryBytes) {
        this.sinceFull = 0;
        this.runs.full++;
        gc({ type: "major" });
      } else {
        this.runs.minor++;
        gc({ type: "minor" });
      }
    });
  }
}
