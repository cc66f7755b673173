import type { Socket } from "node:net";
import { isBulwarkError } from "@bulwark/errors";
import {
  HANDSHAKE_TIMEOUT_MS,
  IHAVEOPT,
  MAX_IN_FLIGHT_BYTES,
  MAX_IN_FLIGHT_REQUESTS,
  MAX_NAME_BYTES,
  MAX_OPTION_BYTES,
  MAX_OPTIONS_PER_CONNECTION,
  MAX_REQUEST_BYTES,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EIO,
  NBD_EPERM,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_MAGIC,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBDMAGIC,
  PREFERRED_BLOCK_BYTES,
  REQUEST_HEADER_BYTES,
} from "./constants.js";
import type { ExportEntry, ExportLookup } from "./export-entry.js";
import type { NbdLogger } from "./logger.js";
import { SocketReader } from "./socket-reader.js";
import type { WritableBlockDevice } from "./source.js";

/** A client broke the protocol in a way that cannot be answered: the connection is dropped. */
class ProtocolViolation extends Error {}

/** Serves one TCP connection: handshake, then transmission. Never throws; always ends the socket. */
export async function serveConnection(
  socket: Socket,
  exports: ExportLookup,
  log: NbdLogger,
  handshakeTimeoutMs = HANDSHAKE_TIMEOUT_MS,
): Promise<void> {
  socket.setNoDelay(true);
  const reader = new SocketReader(socket);
  const deadline = setTimeout(() => {
    log.warn({ remote: socket.remoteAddress }, "NBD handshake timed out");
    socket.destroy();
  }, handshakeTimeoutMs);
  try {
    const entry = await handshake(socket, reader, exports);
    clearTimeout(deadline);
    if (!entry) {
      socket.end();
      return;
    }
    log.info({ export: entry.id, remote: socket.remoteAddress }, "NBD client connected");
    await transmit(socket, reader, entry, log);
    socket.end();
  } catch (err) {
    if (err instanceof ProtocolViolation) {
      log.warn(
        { remote: socket.remoteAddress, reason: err.message },
        "NBD protocol violation; disconnecting",
      );
    }
    socket.destroy();
  } finally {
    clearTimeout(deadline);
  }
}

function write(socket: Socket, ...parts: Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    for (let i = 0; i < parts.length - 1; i++) socket.write(parts[i]!);
    socket.write(parts[parts.length - 1]!, () => resolve());
  });
}

function optionReply(
  socket: Socket,
  option: number,
  type: number,
  data: Buffer = Buffer.alloc(0),
): Promise<void> {
  const head = Buffer.alloc(20);
  head.writeBigUInt64BE(NBD_REP_MAGIC, 0);
  head.writeUInt32BE(option, 8);
  head.writeUInt32BE(type, 12);
  head.writeUInt32BE(data.length, 16);
  return write(socket, head, data);
}

function optionError(socket: Socket, option: number, type: number, message: string): Promise<void> {
  return optionReply(socket, option, type, Buffer.from(message, "utf8"));
}

/** Parses NBD_OPT_INFO / NBD_OPT_GO data: name length, name, count, info types. */
function parseInfoRequest(data: Buffer): { name: Buffer; infos: number[] } | undefined {
  if (data.length < 6) return undefined;
  const nameLength = data.readUInt32BE(0);
  if (nameLength > MAX_NAME_BYTES || 4 + nameLength + 2 > data.length) return undefined;
  const count = data.readUInt16BE(4 + nameLength);
  if (data.length !== 4 + nameLength + 2 + 2 * count) return undefined;
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(4 + nameLength + 2 + 2 * i));
  return { name: data.subarray(4, 4 + nameLength), infos };
}

/** Fixed-newstyle negotiation; the chosen export (attached), or undefined when the client left. */
async function handshake(
  socket: Socket,
  reader: SocketReader,
  exports: ExportLookup,
): Promise<ExportEntry | undefined> {
  const hello = Buffer.alloc(18);
  hello.writeBigUInt64BE(NBDMAGIC, 0);
  hello.writeBigUInt64BE(IHAVEOPT, 8);
  hello.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
  await write(socket, hello);

  const clientFlags = (await reader.read(4)).readUInt32BE(0);
  const known = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;
  if (!(clientFlags & NBD_FLAG_C_FIXED_NEWSTYLE) || (clientFlags & ~known) !== 0) {
    throw new ProtocolViolation(`client flags 0x${clientFlags.toString(16)}: fixed newstyle is required`);
  }
  const noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0;

  for (let n = 0; ; n++) {
    if (n >= MAX_OPTIONS_PER_CONNECTION) throw new ProtocolViolation("too many options");
    const head = await reader.read(16);
    if (head.readBigUInt64BE(0) !== IHAVEOPT) throw new ProtocolViolation("bad option magic");
    const option = head.readUInt32BE(8);
    const length = head.readUInt32BE(12);
    if (length > MAX_OPTION_BYTES) throw new ProtocolViolation(`option of ${length} bytes`);
    const data = await reader.read(length);

    switch (option) {
      case NBD_OPT_EXPORT_NAME: {
        // No error reply exists for this option: an unknown or full export closes the connection.
        const entry = data.length <= MAX_NAME_BYTES ? exports.lookup(data) : undefined;
        if (!entry?.attach(socket)) return undefined;
        const reply = Buffer.alloc(noZeroes ? 10 : 134);
        reply.writeBigUInt64BE(BigInt(entry.size), 0);
        reply.writeUInt16BE(entry.transmissionFlags, 8);
        await write(socket, reply);
        return entry;
      }
      case NBD_OPT_ABORT:
        await optionReply(socket, option, NBD_REP_ACK);
        return undefined;
      case NBD_OPT_LIST:
        await optionError(socket, option, NBD_REP_ERR_POLICY, "export names are not listed");
        break;
      case NBD_OPT_INFO:
      case NBD_OPT_GO: {
        const req = parseInfoRequest(data);
        if (!req) {
          await optionError(socket, option, NBD_REP_ERR_INVALID, "malformed info request");
          break;
        }
        const entry = exports.lookup(req.name);
        if (!entry) {
          await optionError(socket, option, NBD_REP_ERR_UNKNOWN, "no such export (or it has expired)");
          break;
        }
        if (option === NBD_OPT_GO && !entry.attach(socket)) {
          await optionError(socket, option, NBD_REP_ERR_POLICY, "the export has too many connections");
          break;
        }
        const info = Buffer.alloc(12);
        info.writeUInt16BE(NBD_INFO_EXPORT, 0);
        info.writeBigUInt64BE(BigInt(entry.size), 2);
        info.writeUInt16BE(entry.transmissionFlags, 10);
        await optionReply(socket, option, NBD_REP_INFO, info);
        if (req.infos.includes(NBD_INFO_BLOCK_SIZE)) {
          const sizes = Buffer.alloc(14);
          sizes.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
          sizes.writeUInt32BE(1, 2);
          sizes.writeUInt32BE(PREFERRED_BLOCK_BYTES, 6);
          sizes.writeUInt32BE(MAX_REQUEST_BYTES, 10);
          await optionReply(socket, option, NBD_REP_INFO, sizes);
        }
        await optionReply(socket, option, NBD_REP_ACK);
        if (option === NBD_OPT_GO) return entry;
        break;
      }
      default:
        // NBD_OPT_STRUCTURED_REPLY, NBD_OPT_STARTTLS, meta contexts, extended headers, unknown.
        await optionError(socket, option, NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }
}

function simpleReply(socket: Socket, cookie: Buffer, error: number, data?: Buffer): Promise<void> {
  const head = Buffer.alloc(16);
  head.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  head.writeUInt32BE(error, 4);
  cookie.copy(head, 8);
  return data && error === 0 ? write(socket, head, data) : write(socket, head);
}

/**
 * Requests until NBD_CMD_DISC or the connection ends; up to MAX_IN_FLIGHT_REQUESTS (and about
 * MAX_IN_FLIGHT_BYTES of data) at once, replies in completion order.
 */
async function transmit(
  socket: Socket,
  reader: SocketReader,
  entry: ExportEntry,
  log: NbdLogger,
): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  let bytesInFlight = 0;
  const run = (cookie: Buffer, what: string, bytes: number, op: () => Promise<Buffer | undefined>) => {
    bytesInFlight += bytes;
    const p: Promise<void> = op()
      .then(
        (data) => simpleReply(socket, cookie, 0, data),
        (err: unknown) => {
          log.warn(
            {
              export: entry.id,
              request: what,
              code: isBulwarkError(err) ? err.code : undefined,
              err: (err as Error)?.message,
            },
            "NBD request failed; replied EIO",
          );
          return simpleReply(socket, cookie, NBD_EIO);
        },
      )
      .finally(() => {
        bytesInFlight -= bytes;
        inFlight.delete(p);
      });
    inFlight.add(p);
  };
  const device = entry.device as WritableBlockDevice;
  /** A mutation, then a flush when the client set FUA (forced unit access). */
  const mutate = (flags: number, op: () => Promise<void>) => async () => {
    await op();
    if (flags & NBD_CMD_FLAG_FUA) await device.flush();
    return undefined;
  };

  for (;;) {
    while (
      inFlight.size >= MAX_IN_FLIGHT_REQUESTS ||
      (inFlight.size > 0 && bytesInFlight >= MAX_IN_FLIGHT_BYTES)
    ) {
      await Promise.race(inFlight);
    }
    let head: Buffer;
    try {
      head = await reader.read(REQUEST_HEADER_BYTES);
    } catch {
      await Promise.all(inFlight); // the client went away; let the running requests settle
      return;
    }
    if (head.readUInt32BE(0) !== NBD_REQUEST_MAGIC) throw new ProtocolViolation("bad request magic");
    const flags = head.readUInt16BE(4);
    const type = head.readUInt16BE(6);
    const cookie = Buffer.from(head.subarray(8, 16));
    const offset64 = head.readBigUInt64BE(16);
    const length = head.readUInt32BE(24);
    const offset = offset64 > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(offset64);
    const inRange = offset + length <= entry.size;

    switch (type) {
      case NBD_CMD_DISC:
        await Promise.all(inFlight);
        return;
      case NBD_CMD_READ:
        if (!inRange || length > MAX_REQUEST_BYTES) await simpleReply(socket, cookie, NBD_EINVAL);
        else run(cookie, "read", length, () => entry.device.read(offset, length));
        break;
      case NBD_CMD_WRITE: {
        // The payload follows the header whatever we answer: consume it to stay in step.
        if (length > MAX_REQUEST_BYTES) {
          await reader.skip(length);
          await simpleReply(socket, cookie, NBD_EINVAL);
          break;
        }
        const data = await reader.read(length);
        if (!entry.writable) await simpleReply(socket, cookie, NBD_EPERM);
        else if (!inRange) await simpleReply(socket, cookie, NBD_EINVAL);
        else
          run(
            cookie,
            "write",
            length,
            mutate(flags, () => device.write(offset, data)),
          );
        break;
      }
      case NBD_CMD_TRIM:
      case NBD_CMD_WRITE_ZEROES:
        if (!entry.writable) await simpleReply(socket, cookie, NBD_EPERM);
        else if (!inRange) await simpleReply(socket, cookie, NBD_EINVAL);
        else
          run(
            cookie,
            type === NBD_CMD_TRIM ? "trim" : "write-zeroes",
            0,
            mutate(flags, () => device.zero(offset, length)),
          );
        break;
      case NBD_CMD_FLUSH: {
        // Covers every write received before it, not only the ones already answered.
        const before = [...inFlight];
        run(cookie, "flush", 0, async () => {
          await Promise.all(before);
          if (entry.writable) await device.flush();
          return undefined;
        });
        break;
      }
      default:
        await simpleReply(socket, cookie, NBD_EINVAL);
    }
  }
}
