// NBD protocol constants, with the spec's names and values
// (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md). Only what docs/nbd.md implements.

/** "NBDMAGIC": the first 8 bytes the server sends. */
export const NBDMAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": newstyle handshake magic, also the prefix of every client option. */
export const IHAVEOPT = 0x49484156454f5054n;
/** Prefix of every option reply. */
export const NBD_REP_MAGIC = 0x0003e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;

// Handshake flags (server) and client flags.
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Options.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;

// Option reply types.
export const NBD_REP_ACK = 1;
export const NBD_REP_INFO = 3;
const NBD_REP_FLAG_ERROR = 2 ** 31;
export const NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR + 1;
export const NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR + 2;
export const NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR + 3;
export const NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR + 6;

// Info types (NBD_REP_INFO payloads).
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_BLOCK_SIZE = 3;

// Transmission flags.
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;

// Commands.
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_WRITE_ZEROES = 6;

// Command flags.
export const NBD_CMD_FLAG_FUA = 1 << 0;

// Error values in simple replies (the spec fixes them to the Linux errno numbers).
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_EINVAL = 22;

/** Size of a transmission request header: magic 4, flags 2, type 2, cookie 8, offset 8, length 4. */
export const REQUEST_HEADER_BYTES = 28;
/** Size of a simple reply header: magic 4, error 4, cookie 8. */
export const SIMPLE_REPLY_HEADER_BYTES = 16;

// Limits (docs/nbd.md). The spec's default maximum block size is 32 MiB: clients that do not ask for
// NBD_INFO_BLOCK_SIZE assume it, so a larger cap would not help and a smaller one could break them.
export const MAX_REQUEST_BYTES = 32 * 2 ** 20;
/** Preferred block size advertised: the COW overlay's granularity. */
export const PREFERRED_BLOCK_BYTES = 4096;
/** The spec's limit for export names. */
export const MAX_NAME_BYTES = 4096;
/** Longest option payload accepted; real options are a name plus a few info requests. */
export const MAX_OPTION_BYTES = 64 * 1024;
/** More options than any client needs before transmission; stops option loops. */
export const MAX_OPTIONS_PER_CONNECTION = 32;
/** An unauthenticated client must finish the handshake in this time or is disconnected. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Requests handled at once per connection: enough to overlap chunk decoding, bounded for memory. */
export const MAX_IN_FLIGHT_REQUESTS = 8;
/**
 * Bytes of READ/WRITE data in flight per connection: with 32 MiB requests the count alone would let
 * one client hold 256 MiB; this keeps it near 64 MiB (one request is always admitted).
 */
export const MAX_IN_FLIGHT_BYTES = 64 * 2 ** 20;
