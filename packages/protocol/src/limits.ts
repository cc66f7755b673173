// Sizes and counts of the protocol (docs/protocol.md §5). Servers enforce them; agents stay below.

const KiB = 1024;
const MiB = 1024 * KiB;

/** Length of every chunk ID: the keyed hash output (HMAC-SHA256 or keyed BLAKE3, both 32 bytes). */
export const CHUNK_ID_BYTES = 32;

/** Smallest chunk size a session may use; smaller chunks would make indexes larger than the data saves. */
export const MIN_CHUNK_SIZE = 4 * KiB;

/** Largest chunk size; the repository is expected to pick 64 KiB – 1 MiB by measurement. */
export const MAX_CHUNK_SIZE = 4 * MiB;

/**
 * Default payload per UploadChunks batch: whole chunks up to 4 MiB (64 × 64 KiB, 16 × 256 KiB,
 * 4 × 1 MiB). Per-message overhead and one ack per batch are negligible at this size, and a cut
 * connection leaves at most a few MiB per stream to re-query.
 */
export const DEFAULT_UPLOAD_BATCH_BYTES = 4 * MiB;

/** Most payload the server accepts in one batch (announced as max_batch_bytes in BeginSession). */
export const MAX_UPLOAD_BATCH_BYTES = 8 * MiB;

/**
 * Most chunks in one UploadChunks batch: a full batch of the smallest raw chunks (8 MiB / 4 KiB).
 * Without it the message size alone would not bound the count (an ID, an offset and a near-empty
 * zstd frame are ~50 bytes, so ~170 000 chunks fit in one message), and the server allocates and
 * plans work per chunk. Checked before the session is even looked up.
 */
export const MAX_UPLOAD_BATCH_CHUNKS = 2048;

/**
 * Most plaintext (the sum of plain_size) in one batch. A tiny zstd frame may claim a whole chunk of
 * plaintext, and the server decompresses and hashes every chunk to check it, so without this bound
 * one 8 MiB message could demand 2 048 × 4 MiB = 8 GiB of decompression. 32 MiB is 8 × the agent's
 * batches (one 4 MiB group of plaintext each) and leaves room for 4:1 compression of a full 8 MiB batch.
 */
export const MAX_UPLOAD_BATCH_PLAIN_BYTES = 32 * MiB;

/**
 * Framing allowance on top of a batch. Worst case: 8 MiB of 4 KiB chunks = 2 048 chunks, each
 * with a 32-byte ID, up to MAX_OFFSETS_PER_CHUNK offsets as 8-byte varints, sizes and tags
 * (≈ 180 bytes) ≈ 360 KiB; 512 KiB leaves room for the session ID and future fields.
 */
export const MESSAGE_FRAMING_ALLOWANCE_BYTES = 512 * KiB;

/**
 * Largest message either side accepts. grpc-js buffers a whole message before decoding it, so this
 * is also the per-stream memory bound. Anything larger is refused with RESOURCE_EXHAUSTED.
 */
export const MAX_MESSAGE_BYTES = MAX_UPLOAD_BATCH_BYTES + MESSAGE_FRAMING_ALLOWANCE_BYTES;

/** IDs per QueryMissing (≈ 272 KiB request); at 256 KiB chunks one call covers 2 GiB of volume. */
export const MAX_QUERY_IDS = 8192;

/** IDs per commit IndexPart: 4 MiB of IDs, half the message limit (a 1 TB index takes ~128 parts at 64 KiB chunks). */
export const MAX_INDEX_PART_IDS = 131_072;

/**
 * Offsets listed with one uploaded chunk; informational (validation, progress), the index is
 * authoritative. Bounded so that framing stays within MESSAGE_FRAMING_ALLOWANCE_BYTES.
 */
export const MAX_OFFSETS_PER_CHUNK = 16;

/** Largest volume: offsets must stay exact in a JavaScript number (2^53 bytes = 8 PiB). */
export const MAX_VOLUME_BYTES = Number.MAX_SAFE_INTEGER;

/**
 * Parallel UploadChunks streams per session. The transport alone is fastest with 4 (docs/protocol.md
 * §10), but against bulwark-server 2 streams (with 2 groups each in flight) measured as fast as 4
 * and cost the agent ~35 MB less peak RSS: its 200 MB bound is the scarcer resource.
 */
export const DEFAULT_UPLOAD_STREAMS = 2;

/** Chunks a restoring agent keeps requested but not written (16 MiB at 256 KiB chunks). */
export const DEFAULT_RESTORE_WINDOW_CHUNKS = 64;

/** A backup session with no call for this long expires. */
export const DEFAULT_SESSION_IDLE_TIMEOUT_S = 3600;

/** A power of two within [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE]. */
export function isValidChunkSize(size: number): boolean {
  return (
    Number.isInteger(size) && size >= MIN_CHUNK_SIZE && size <= MAX_CHUNK_SIZE && (size & (size - 1)) === 0
  );
}

/** Number of chunks of a volume: ceil(size / chunkSize). */
export function chunkCount(sizeBytes: number, chunkSize: number): number {
  return Math.ceil(sizeBytes / chunkSize);
}

/** Plaintext length of chunk `index`: chunkSize except for a short last chunk. */
export function chunkLength(sizeBytes: number, chunkSize: number, index: number): number {
  return Math.max(0, Math.min(chunkSize, sizeBytes - index * chunkSize));
}
