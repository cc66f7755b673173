import { createHash, type Hash } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";
import type { IndexRun } from "./generated/bulwark/v1/common.js";
import { CHUNK_ID_BYTES } from "./limits.js";

// The canonical digest of a volume index (docs/protocol.md §4): SHA-256 over each chunk's 32-byte
// ID in order, with 32 zero bytes for a zero chunk. Agent and server compute it the same way here.

const ZERO_ID = Buffer.alloc(CHUNK_ID_BYTES);
/** Zero runs are hashed in slabs so a 1 TB empty volume does not take 16 Mi update calls. */
const ZERO_SLAB_IDS = 4096;
const ZERO_SLAB = Buffer.alloc(CHUNK_ID_BYTES * ZERO_SLAB_IDS);

/** Number of chunks a run covers; throws BULWARK_PROTO_INDEX_INVALID for an empty or ragged run. */
export function indexRunLength(run: IndexRun): number {
  const value = run.run;
  if (value?.$case === "ids") {
    if (value.value.length === 0 || value.value.length % CHUNK_ID_BYTES !== 0) {
      throw new BulwarkError(
        "BULWARK_PROTO_INDEX_INVALID",
        "an ids run must hold a positive multiple of 32 bytes",
        {
          details: { bytes: value.value.length },
        },
      );
    }
    return value.value.length / CHUNK_ID_BYTES;
  }
  if (value?.$case === "zero") {
    if (!Number.isSafeInteger(value.value) || value.value < 1) {
      throw new BulwarkError("BULWARK_PROTO_INDEX_INVALID", "a zero run must cover at least one chunk", {
        details: { zero: value.value },
      });
    }
    return value.value;
  }
  throw new BulwarkError("BULWARK_PROTO_INDEX_INVALID", "an index run has neither ids nor zero");
}

/** Incremental index digest: feed runs in chunk order, then read `digest()`. */
export class IndexDigest {
  private readonly hash: Hash = createHash("sha256");
  private count = 0;

  /** Chunks covered so far. */
  get chunks(): number {
    return this.count;
  }

  update(runs: Iterable<IndexRun>): this {
    for (const run of runs) {
      const length = indexRunLength(run);
      if (run.run?.$case === "ids") {
        this.hash.update(run.run.value);
      } else {
        let left = length;
        while (left >= ZERO_SLAB_IDS) {
          this.hash.update(ZERO_SLAB);
          left -= ZERO_SLAB_IDS;
        }
        for (; left > 0; left--) this.hash.update(ZERO_ID);
      }
      this.count += length;
    }
    return this;
  }

  digest(): Buffer {
    return this.hash.digest();
  }
}
