import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import {
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from "./constants.js";
import type { BlockSource, WritableBlockDevice } from "./source.js";

/** Exports are looked up by the SHA-256 of their name: the name itself is never kept or compared. */
export function nameDigest(name: Buffer | string): string {
  return createHash("sha256").update(name).digest("hex");
}

/** One export as the connection code sees it. */
export class ExportEntry {
  readonly sockets = new Set<Socket>();
  timer: NodeJS.Timeout | undefined;

  constructor(
    readonly id: string,
    readonly digest: string,
    readonly device: BlockSource | WritableBlockDevice,
    readonly writable: boolean,
    readonly createdAt: Date,
    readonly expiresAt: Date,
    readonly maxConnections: number,
  ) {}

  get size(): number {
    return this.device.size;
  }

  get transmissionFlags(): number {
    return (
      NBD_FLAG_HAS_FLAGS |
      NBD_FLAG_SEND_FLUSH |
      (this.writable
        ? NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES
        : NBD_FLAG_READ_ONLY)
    );
  }

  /** Counts a connection against the export's limit; false when it is full. */
  attach(socket: Socket): boolean {
    if (this.sockets.size >= this.maxConnections) return false;
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    return true;
  }
}

/** What a connection needs from the server: find an export by the name the client sent. */
export interface ExportLookup {
  lookup(name: Buffer): ExportEntry | undefined;
}
