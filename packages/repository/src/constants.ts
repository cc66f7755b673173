/** Named limits and defaults of the repository format (docs/repository-format.md); each says why. */

/** Default chunk size: measured (spec, "Chunk size"): 3.55x stored growth per scattered 4 KiB write. */
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
/** Chunk sizes a reader accepts: power of two, 4 KiB (filesystem block) to 16 MiB (blob limit). */
export const MIN_CHUNK_SIZE = 4 * 1024;
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/** Index fan-out: 256 IDs = 8 KiB leaves, so a scattered write rewrites little index. */
export const DEFAULT_FANOUT = 256;
export const MIN_FANOUT = 2;
export const MAX_FANOUT = 16384;
/** A blob's plaintext never exceeds this; larger length fields are corruption, not allocation requests. */
export const MAX_BLOB_PLAINTEXT = 16 * 1024 * 1024;
/** Largest volume a point may describe (2^53 bytes keeps offsets exact in JS numbers). */
export const MAX_VOLUME_SIZE = Number.MAX_SAFE_INTEGER;
/** zstd level 1: ~400 MB/s per core here; higher levels cost throughput for a few percent. */
export const DEFAULT_ZSTD_LEVEL = 1;
/** scrypt defaults (32 MiB, ~100 ms) and the ceiling a hostile key file may ask for. */
export const SCRYPT_DEFAULTS = { N: 2 ** 15, r: 8, p: 1 } as const;
export const SCRYPT_MAX = { N: 2 ** 20, r: 16, p: 4 } as const;
/** Ingest sessions rewrite their heartbeat this often ... */
export const SESSION_HEARTBEAT_MS = 30_000;
/** ... and are dead (crashed) after this long without one: 120 missed heartbeats. */
export const SESSION_STALE_AFTER_MS = 60 * 60 * 1000;
/** GC subtracts this from its cutoff: filesystem timestamps can lag the clock by a tick. */
export const MTIME_SKEW_MARGIN_MS = 2_000;
/** GC's default grace period for unreferenced chunks. */
export const DEFAULT_GC_GRACE_MS = 24 * 60 * 60 * 1000;
/** Temp files of crashed writers are removed by GC after this. */
export const TEMP_STALE_AFTER_MS = 60 * 60 * 1000;
/** Chunks handed to a worker per message: big enough to amortise messaging, small enough to stream. */
export const CODEC_BATCH_BYTES = 1024 * 1024;
/**
 * Ingest of a file: bytes a codec worker reads and hashes per message. Each message and reply
 * wakes a thread, and on two cores the woken main thread preempts a worker: 1 MiB batches measured
 * ≈ 2000 such switches per GiB.
 */
export const FILE_SCAN_BATCH_BYTES = 4 * 1024 * 1024;
/** Bytes of chunk data in flight in an ingest (read, hashed, encoded, being written): bounds memory. */
export const INGEST_MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024;
/** Reader cache: decoded chunks kept for random access (NBD / file-level restore read small ranges). */
export const READER_CACHE_CHUNKS = 64;
/** Streaming reads keep this many chunks being fetched and decoded ahead of the consumer. */
export const READ_AHEAD_CHUNKS = 16;
/**
 * Batched durability of ingest (spec, "Write ordering and crash safety"): new chunks are staged
 * (written, not fsynced) and made durable together by one barrier once this many bytes are
 * staged, ... Small enough that the disk writes all through an ingest (a barrier runs beside the
 * workers) and that commit's last publish flushes little; large enough that the barriers' own
 * cost (two `sync -f` runs each) stays a few per GiB.
 */
export const STAGE_FLUSH_BYTES = 64 * 1024 * 1024;
/** ... or once the oldest staged chunk is this old (slow uploads; GC removes temps after an hour). */
export const STAGE_FLUSH_AFTER_MS = 5_000;
/** Restoring into a file: chunks per worker message, and messages in flight per worker thread. */
export const RESTORE_BATCH_CHUNKS = 32;
export const RESTORE_BATCHES_PER_THREAD = 4;
/** From a local backend a batch is only its IDs (1 KiB), so more can wait per restore worker. */
export const RESTORE_LOCAL_BATCHES_PER_THREAD = 16;
/**
 * Restore workers write consecutive chunks with one pwrite of up to this many bytes (or one chunk,
 * if larger). Measured here (600 MiB into the page cache): 64 KiB or 256 KiB writes cost ≈0.19 s
 * of system time, 512 KiB 0.5 s, 2 MiB 1.6–1.8 s: the source must still be in the core's cache.
 */
export const RESTORE_RUN_BYTES = 256 * 1024;
/**
 * Restoring into a file starts the disk writes of what it restored (fdatasync, one at a time, on the
 * I/O thread pool) each time this many more bytes were written: otherwise nothing reaches the disk
 * before the final fsync (the kernel's background writeback starts only at 10% of RAM dirty), and
 * that fsync then waits for the whole image with both cores idle.
 */
export const RESTORE_WRITE_BEHIND_BYTES = 64 * 1024 * 1024;
