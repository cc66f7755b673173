import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { BulwarkError } from "@bulwark/errors";
import { serveConnection } from "./connection.js";
import { CowOverlay } from "./cow-overlay.js";
import { ExportEntry, type ExportLookup, nameDigest } from "./export-entry.js";
import { type NbdLogger, silentLogger } from "./logger.js";
import { padToSector } from "./sector-padding.js";
import type { BlockSource } from "./source.js";

/** Connections one export accepts at once: a VM plus a copy tool, with room to spare. */
export const DEFAULT_EXPORT_CONNECTIONS = 4;
/** Connections the listener accepts at once, handshakes included: bounds what unauthenticated peers hold. */
export const DEFAULT_LISTENER_CONNECTIONS = 64;
/** 32 random bytes: a name is the capability to read the export (docs/nbd.md, "Security model"). */
const EXPORT_NAME_BYTES = 32;
/** setTimeout's longest delay; longer expiries are reached by re-arming. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface NbdServerOptions {
  /** Default 127.0.0.1: plain NBD has no authentication. */
  host?: string;
  /** Default 10809 (IANA); 0 picks a free port. */
  port?: number;
  now?: () => Date;
  maxConnections?: number;
  /** An unauthenticated client must finish the handshake in this time (default HANDSHAKE_TIMEOUT_MS). */
  handshakeTimeoutMs?: number;
  /** Where writable exports keep their overlay (default: the system temporary directory). */
  tempDir?: string;
  log?: NbdLogger;
}

export interface AddExportOptions {
  source: BlockSource;
  /** Writes go to a copy-on-write overlay, never to the source. */
  writable?: boolean;
  expiresAt: Date;
  maxConnections?: number;
  /** Called once if the export ends by expiry (not when removed). */
  onExpire?: (info: ExportInfo) => void;
}

/** An export without its name: safe to log, list and audit. */
export interface ExportInfo {
  id: string;
  size: number;
  writable: boolean;
  createdAt: Date;
  expiresAt: Date;
  connections: number;
}

export interface OpenedExport extends ExportInfo {
  /** The secret export name. */
  name: string;
  /** nbd://host:port/name */
  uri: string;
}

export class NbdServer implements ExportLookup {
  private readonly host: string;
  private readonly requestedPort: number;
  private readonly now: () => Date;
  private readonly maxConnections: number;
  private readonly log: NbdLogger;
  private readonly byDigest = new Map<string, ExportEntry>();
  private readonly byId = new Map<string, ExportEntry>();
  private readonly expiryHooks = new Map<string, (info: ExportInfo) => void>();
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;
  private boundPort: number | undefined;

  constructor(private readonly opts: NbdServerOptions = {}) {
    this.host = opts.host ?? "127.0.0.1";
    this.requestedPort = opts.port ?? 10809;
    this.now = opts.now ?? (() => new Date());
    this.maxConnections = opts.maxConnections ?? DEFAULT_LISTENER_CONNECTIONS;
    this.log = opts.log ?? silentLogger;
  }

  /** The bound address; BULWARK_NBD_LISTENER_UNAVAILABLE before listen(). */
  get address(): { host: string; port: number } {
    if (this.boundPort === undefined) {
      throw new BulwarkError("BULWARK_NBD_LISTENER_UNAVAILABLE", "the NBD listener is not running");
    }
    return { host: this.host, port: this.boundPort };
  }

  async listen(): Promise<{ host: string; port: number }> {
    const server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) =>
        reject(
          new BulwarkError(
            "BULWARK_NBD_LISTENER_UNAVAILABLE",
            `cannot listen on ${this.host}:${this.requestedPort}: ${err.message}`,
            { cause: err },
          ),
        ),
      );
      server.listen({ host: this.host, port: this.requestedPort }, resolve);
    });
    server.on("error", (err) => this.log.warn({ err: err.message }, "NBD listener error"));
    this.server = server;
    const addr = server.address();
    this.boundPort = typeof addr === "object" && addr ? addr.port : this.requestedPort;
    return this.address;
  }

  private accept(socket: Socket): void {
    if (this.sockets.size >= this.maxConnections) {
      this.log.warn({ remote: socket.remoteAddress }, "NBD listener full; connection refused");
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.on("error", () => undefined); // reported through the reader; never an uncaught error
    socket.once("close", () => this.sockets.delete(socket));
    void serveConnection(socket, this, this.log, this.opts.handshakeTimeoutMs);
  }

  lookup(name: Buffer): ExportEntry | undefined {
    const entry = this.byDigest.get(nameDigest(name));
    if (!entry) return undefined;
    if (this.now().getTime() >= entry.expiresAt.getTime()) {
      void this.expire(entry);
      return undefined;
    }
    return entry;
  }

  /** URI of an export name on this listener (IPv6 hosts in brackets). */
  uriFor(name: string): string {
    const { host, port } = this.address;
    return `nbd://${host.includes(":") ? `[${host}]` : host}:${port}/${name}`;
  }

  async addExport(opts: AddExportOptions): Promise<OpenedExport> {
    const createdAt = this.now();
    if (!(opts.expiresAt.getTime() > createdAt.getTime())) {
      throw new BulwarkError("BULWARK_NBD_BAD_REQUEST", "the export's expiry must be in the future");
    }
    if (!Number.isSafeInteger(opts.source.size) || opts.source.size < 0) {
      throw new BulwarkError("BULWARK_NBD_BAD_REQUEST", `invalid export size ${opts.source.size}`);
    }
    const name = randomBytes(EXPORT_NAME_BYTES).toString("base64url");
    const uri = this.uriFor(name);
    const source = padToSector(opts.source);
    const device = opts.writable
      ? await CowOverlay.create(source, this.opts.tempDir ? { tempDir: this.opts.tempDir } : {})
      : source;
    const entry = new ExportEntry(
      randomUUID(),
      nameDigest(name),
      device,
      !!opts.writable,
      createdAt,
      opts.expiresAt,
      opts.maxConnections ?? DEFAULT_EXPORT_CONNECTIONS,
    );
    this.byDigest.set(entry.digest, entry);
    this.byId.set(entry.id, entry);
    if (opts.onExpire) this.expiryHooks.set(entry.id, opts.onExpire);
    this.arm(entry);
    this.log.info({ export: entry.id, size: entry.size, writable: entry.writable }, "NBD export opened");
    return { ...this.info(entry), name, uri };
  }

  private arm(entry: ExportEntry): void {
    const wait = entry.expiresAt.getTime() - this.now().getTime();
    entry.timer = setTimeout(
      () => {
        if (this.now().getTime() >= entry.expiresAt.getTime()) void this.expire(entry);
        else this.arm(entry);
      },
      Math.min(MAX_TIMER_MS, Math.max(0, wait)),
    );
    entry.timer.unref();
  }

  private async expire(entry: ExportEntry): Promise<void> {
    const info = this.info(entry);
    if (!(await this.remove(entry))) return;
    this.log.info({ export: entry.id }, "NBD export expired");
    const hook = this.expiryHooks.get(entry.id);
    this.expiryHooks.delete(entry.id);
    hook?.(info);
  }

  private info(entry: ExportEntry): ExportInfo {
    return {
      id: entry.id,
      size: entry.size,
      writable: entry.writable,
      createdAt: entry.createdAt,
      expiresAt: entry.expiresAt,
      connections: entry.sockets.size,
    };
  }

  /** Closes its connections and discards its overlay; false if it was already gone. */
  private async remove(entry: ExportEntry): Promise<boolean> {
    if (this.byId.get(entry.id) !== entry) return false;
    this.byId.delete(entry.id);
    this.byDigest.delete(entry.digest);
    clearTimeout(entry.timer);
    for (const socket of entry.sockets) socket.destroy();
    if (entry.device instanceof CowOverlay) await entry.device.close();
    return true;
  }

  /** Ends an export now; BULWARK_NBD_EXPORT_NOT_FOUND if it is not open. */
  async removeExport(id: string): Promise<ExportInfo> {
    const entry = this.byId.get(id);
    if (!entry) throw new BulwarkError("BULWARK_NBD_EXPORT_NOT_FOUND", `no open NBD export ${id}`);
    const info = this.info(entry);
    await this.remove(entry);
    this.expiryHooks.delete(id);
    this.log.info({ export: id }, "NBD export closed");
    return info;
  }

  getExport(id: string): ExportInfo | undefined {
    const entry = this.byId.get(id);
    return entry ? this.info(entry) : undefined;
  }

  listExports(): ExportInfo[] {
    return [...this.byId.values()].map((e) => this.info(e));
  }

  /** Ends every export and connection and stops listening. */
  async close(): Promise<void> {
    for (const entry of [...this.byId.values()]) await this.remove(entry);
    this.expiryHooks.clear();
    for (const socket of this.sockets) socket.destroy();
    const server = this.server;
    this.server = undefined;
    this.boundPort = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
