import { CHUNK_ID_BYTES, type IndexRun, type RestoreChunk, type RestoreResponse } from "@bulwark/protocol";
import type { RestoreStream } from "./connection.js";
import type { DecodePool } from "./decode-pool.js";
import type { PendingChunks } from "./verify.js";

// The read-ahead parts of an agent restore (docs/protocol.md §3, docs/agent.md "Restore"): the
// responses of the stream, pulled and their decoding started several messages ahead of the one
// being written; and for a delta restore, the target read and hashed on the workers ahead of the
// Wants that carry its IDs.

/** Responses pulled ahead of the one being handled, their chunks already decoding on the workers. */
const RESPONSES_AHEAD = 2;
/**
 * Chunks per target scan (one worker job) and scans in flight. A scan holds no buffer here (the
 * worker reuses its own), only the IDs it returns, so it runs far ahead of the Wants: 6 scans
 * (12 MiB) tied the hashing to the Wants' round trips and left both workers idle 60% of a 1 GiB
 * delta restore; 48 (96 MiB, 48 KiB of IDs) keep them hashing while the server answers.
 */
const SCAN_CHUNKS = 32;
const SCANS_AHEAD = 48;

/** A response read ahead of its turn, with its decoding under way (or why it was refused). */
export interface Incoming {
  message: RestoreResponse["message"] | undefined;
  pending?: PendingChunks;
  error?: unknown;
}

/**
 * Pulls responses in order and starts decoding each Chunks message as it arrives, up to
 * RESPONSES_AHEAD messages ahead. Stops after the RangeDone of the volume's last chunk: what
 * follows is Finished, which the caller reads itself after its half-close.
 */
export class ResponsePump {
  private readonly queue: Incoming[] = [];
  private pulling = false;
  private stopped = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly stream: RestoreStream,
    private readonly totalChunks: number,
    private readonly begin: (chunks: RestoreChunk[]) => PendingChunks,
  ) {
    this.fill();
  }

  /** The next response in order (message undefined: the server ended the call). */
  async next(): Promise<Incoming> {
    while (this.queue.length === 0) {
      if (this.stopped && !this.pulling) return { message: undefined };
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
    const entry = this.queue.shift()!;
    this.fill();
    return entry;
  }

  private fill(): void {
    if (this.pulling || this.stopped || this.queue.length >= RESPONSES_AHEAD) return;
    this.pulling = true;
    void this.pull();
  }

  private async pull(): Promise<void> {
    let entry: Incoming;
    try {
      const message = (await this.stream.next())?.message;
      entry = { message };
      if (message?.$case === "chunks") {
        try {
          entry.pending = this.begin(message.value.chunks);
        } catch (error) {
          entry.error = error;
        }
      }
      const last =
        message?.$case === "rangeDone" && message.value.startIndex + message.value.count >= this.totalChunks;
      if (!message || last || entry.error !== undefined) this.stopped = true;
    } catch (error) {
      // The stream failed: raised when this entry's turn comes.
      entry = { message: undefined, error };
      this.stopped = true;
    }
    this.queue.push(entry);
    this.pulling = false;
    this.wake?.();
    this.wake = undefined;
    this.fill();
  }
}

/**
 * A delta restore's view of its target: chunks read and hashed on the workers (SCAN_CHUNKS per
 * job, SCANS_AHEAD jobs in flight) in order from `start`, so the IDs for the next Want are
 * usually ready when it is sent; chunks in a hole of a file target are zero without a read, and of
 * chunks partly in a hole only the data is read. Per chunk: its keyed hash, or null when it reads
 * as zeros.
 */
export class TargetScan {
  private readonly scans: { start: number; ids: Promise<(Buffer | null)[]> }[] = [];
  private scanned: number;
  private ready: (Buffer | null)[] = [];
  private readyFrom: number;
  private stopped = false;

  constructor(
    private readonly pool: DecodePool,
    private readonly fd: number,
    start: number,
    private readonly total: number,
    private readonly chunkSize: number,
    private readonly lengthOf: (i: number) => number,
    /**
     * The data parts of target bytes [from, to) (a file's extents; the rest reads as zeros), or
     * undefined when not known (everything is read).
     */
    private readonly dataIn: (from: number, to: number) => [number, number][] | undefined = () => undefined,
  ) {
    this.scanned = start;
    this.readyFrom = start;
    this.fill();
  }

  /** IDs of [start, start + count); the ranges must be asked for in order, without gaps. */
  async take(start: number, count: number): Promise<(Buffer | null)[]> {
    if (start !== this.readyFrom) throw new Error(`target scan is at chunk ${this.readyFrom}, not ${start}`);
    while (this.ready.length < count) {
      const scan = this.scans.shift();
      if (!scan) throw new Error(`target scan ended at chunk ${this.scanned}`);
      this.fill();
      this.ready.push(...(await scan.ids));
    }
    const out = this.ready.slice(0, count);
    this.ready = this.ready.slice(count);
    this.readyFrom += count;
    return out;
  }

  /** No more scans are started (the restore ends); those in flight finish on their own. */
  stop(): void {
    this.stopped = true;
  }

  /** True when chunk i lies wholly in a hole of the target (reads as zeros without reading). */
  private hole(i: number): boolean {
    const from = i * this.chunkSize;
    return this.dataIn(from, from + this.lengthOf(i))?.length === 0;
  }

  private fill(): void {
    while (!this.stopped && this.scans.length < SCANS_AHEAD && this.scanned < this.total) {
      const start = this.scanned;
      const inHole = this.hole(start);
      // A run of hole chunks, or of others, at most SCAN_CHUNKS long: holes are not read.
      let n = 1;
      while (n < SCAN_CHUNKS && start + n < this.total && this.hole(start + n) === inHole) n++;
      let ids: Promise<(Buffer | null)[]>;
      if (inHole) ids = Promise.resolve(new Array<null>(n).fill(null));
      else {
        const lengths = Array.from({ length: n }, (_, k) => this.lengthOf(start + k));
        const from = start * this.chunkSize;
        const to = from + lengths.reduce((a, b) => a + b, 0);
        // Only the data of chunks that are partly hole is read (a few blocks in free space).
        const reads = this.dataIn(from, to);
        const whole = !reads || (reads.length === 1 && reads[0]![0] === from && reads[0]![1] === to);
        ids = this.pool.hashTarget(this.fd, from, lengths, whole ? undefined : reads);
        ids.catch(() => {}); // raised by take, in order
      }
      this.scans.push({ start, ids });
      this.scanned += n;
    }
  }
}

/** A Want's have runs from per-chunk IDs (null = zero): ID runs and zero runs. */
export function haveRuns(ids: (Buffer | null)[]): IndexRun[] {
  const runs: IndexRun[] = [];
  let k = 0;
  while (k < ids.length) {
    if (ids[k] === null) {
      let j = k;
      while (j < ids.length && ids[j] === null) j++;
      runs.push({ run: { $case: "zero", value: j - k } });
      k = j;
    } else {
      const group: Buffer[] = [];
      while (k < ids.length && ids[k] !== null) group.push(ids[k++]!);
      runs.push({ run: { $case: "ids", value: Buffer.concat(group, group.length * CHUNK_ID_BYTES) } });
    }
  }
  return runs;
}

/** The buffers of `data` after its first `skip` bytes (what is left after a short pwritev). */
export function remainder(data: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of data) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}
