import { execFile } from "node:child_process";
import { BulwarkError } from "@bulwark/errors";
import { NbdServer, type OpenedExport } from "@bulwark/nbd";
import { PointReader, type Repository, type RestorePoint } from "@bulwark/repository";

// `bulwark-repo nbd` and `bulwark-repo export` (docs/nbd.md): the offline, disaster-recovery way to
// reach a restore point as a block device, with only the repository directory and its key.

/** qemu-img's output format names for the formats `export` offers (vhdx is "vhdx", not "vpc"). */
export const EXPORT_FORMATS = { raw: "raw", qcow2: "qcow2", vhdx: "vhdx" } as const;
export type ExportFormat = keyof typeof EXPORT_FORMATS;

/** The ephemeral export behind `export` only has to outlive the conversion; a week covers any disk. */
const CONVERT_EXPORT_TTL_MS = 7 * 24 * 3600_000;
/** How much of qemu-img's stderr a failure carries: enough for its message, bounded for logs. */
const STDERR_EXCERPT_BYTES = 4000;

/** Parses HOST:PORT (IPv6 as [addr]:port); port 0 picks a free port. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) {
    throw new BulwarkError(
      "BULWARK_NBD_BAD_REQUEST",
      `--listen wants HOST:PORT (e.g. 127.0.0.1:10809), not ${text}`,
    );
  }
  return { host: (m[1] ?? m[2])!, port };
}

/** 127.0.0.0/8, ::1 and "localhost": the only addresses where plain NBD is private to this machine. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export interface ServeOptions {
  writable: boolean;
  listen: { host: string; port: number };
  ttlMs: number;
  /** Ends the export (SIGINT / SIGTERM in main.ts). */
  signal?: AbortSignal;
  /** Called once the export is reachable. */
  onReady: (point: RestorePoint, opened: OpenedExport) => void;
}

/** Serves a restore point until the signal aborts or the export expires; "expired" or "stopped". */
export async function serveRestorePoint(
  repo: Repository,
  ref: string,
  opts: ServeOptions,
): Promise<"expired" | "stopped"> {
  if (!(opts.ttlMs > 0)) throw new BulwarkError("BULWARK_NBD_BAD_REQUEST", "--ttl must be longer than 0");
  const point = await repo.resolvePoint(ref);
  const reader = new PointReader(repo, point);
  const server = new NbdServer({ host: opts.listen.host, port: opts.listen.port });
  await server.listen();
  try {
    let finish: (how: "expired" | "stopped") => void = () => undefined;
    const ended = new Promise<"expired" | "stopped">((resolve) => {
      finish = resolve;
    });
    if (opts.signal?.aborted) return "stopped";
    opts.signal?.addEventListener("abort", () => finish("stopped"), { once: true });
    const opened = await server.addExport({
      source: reader,
      writable: opts.writable,
      expiresAt: new Date(Date.now() + opts.ttlMs),
      onExpire: () => finish("expired"),
    });
    opts.onReady(point, opened);
    return await ended;
  } finally {
    await server.close();
  }
}

/**
 * Converts a restore point to an image file through qemu-img reading an ephemeral, read-only NBD
 * export on a free loopback port: qemu-img knows the formats, we only serve the bytes.
 */
export async function exportRestorePoint(
  repo: Repository,
  ref: string,
  opts: { format: string; out: string; qemuImg?: string },
): Promise<{ point: RestorePoint; format: ExportFormat; out: string }> {
  if (!Object.hasOwn(EXPORT_FORMATS, opts.format)) {
    throw new BulwarkError(
      "BULWARK_NBD_BAD_REQUEST",
      `--format must be one of ${Object.keys(EXPORT_FORMATS).join(", ")}, not ${opts.format}`,
    );
  }
  const format = opts.format as ExportFormat;
  const point = await repo.resolvePoint(ref);
  const server = new NbdServer({ host: "127.0.0.1", port: 0 });
  await server.listen();
  try {
    const opened = await server.addExport({
      source: new PointReader(repo, point),
      expiresAt: new Date(Date.now() + CONVERT_EXPORT_TTL_MS),
    });
    await runQemuImg(opts.qemuImg ?? "qemu-img", [
      "convert",
      "-f",
      "raw",
      "-O",
      EXPORT_FORMATS[format],
      opened.uri,
      opts.out,
    ]);
  } finally {
    await server.close();
  }
  return { point, format, out: opts.out };
}

function runQemuImg(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 16 * 1024 * 1024 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const e = err as NodeJS.ErrnoException & { code?: number | string };
      const missing = e.code === "ENOENT";
      // The export name in qemu-img's messages is a capability: never let it into an error.
      const text = String(stderr)
        .replace(/nbd:\/\/\S+/g, "nbd://…")
        .slice(0, STDERR_EXCERPT_BYTES);
      reject(
        new BulwarkError(
          "BULWARK_NBD_CONVERT_FAILED",
          missing
            ? `${command} is not installed (Debian package qemu-utils)`
            : `qemu-img convert failed (exit ${e.code}): ${text.trim()}`,
          { details: { exitCode: missing ? null : e.code, stderr: text } },
        ),
      );
    });
  });
}
