import { hostname } from "node:os";
import type { ActorType, Catalog } from "@bulwark/catalog";
import { BulwarkError, isBulwarkError } from "@bulwark/errors";
import type { ExportInfo, NbdLogger, NbdServer } from "@bulwark/nbd";
import { PointReader } from "@bulwark/repository";
import { z } from "zod";
import { writeAudit } from "../audit/write.js";
import type { RepositoryRegistry } from "../repositories/registry.js";
import { pinBackup, renewPin } from "./pins.js";

// Instant access (docs/nbd.md, "bulwark-server"): a catalog backup served read-only over the
// node's NBD listener, optionally writable through a copy-on-write overlay, for a limited time.
// Opening, closing and expiry are audited with the export's non-secret ID; the export name (the
// capability) goes back to the caller once and is never logged or stored.
//
// The export's pin (catalog ExportPin, docs/nbd.md "A pin") is a short lease renewed on a timer
// while the export is open, never longer than the export's expiry: a node that dies with exports
// open holds their points from prune for at most EXPORT_PIN_LEASE_MS, not for up to 7 days. A
// renewal that finds its pin gone (the catalog was unreachable for longer than the lease and a
// prune removed the expired row) pins the point again if it is still AVAILABLE, and otherwise
// closes the export: its index may be deleted at any moment, and a read must not fail half-way.

/** Longest an export may live: long enough to boot and inspect a VM for days, short enough to be forgotten safely. */
export const MAX_EXPORT_TTL_SECONDS = 7 * 24 * 3600;
/** Shortest: qemu-img info takes seconds; anything below a minute is a mistake. */
export const MIN_EXPORT_TTL_SECONDS = 60;
export const DEFAULT_EXPORT_TTL_SECONDS = 3600;
/** Open exports per node: each holds a restore point's reader cache and maybe an overlay file. */
export const DEFAULT_MAX_EXPORTS = 32;
/** How long a pin holds without renewal: what a dead node's exports cost prune (a delay, no loss). */
export const EXPORT_PIN_LEASE_MS = 10 * 60_000;
/** Renewal period: several tries fit in one lease, so a short catalog outage loses no pin. */
export const EXPORT_PIN_RENEW_MS = 60_000;

/** Who asks; the REST layer fills it from the authenticated principal. */
export const exportRequester = z.object({
  actorType: z.enum(["USER", "API_TOKEN", "AGENT", "SYSTEM"]),
  actorId: z.string().min(1).max(200).nullish(),
  actorName: z.string().min(1).max(200).nullish(),
  ip: z.string().max(100).nullish(),
  /** When set, only this tenant's backups and exports are visible (another tenant's look absent). */
  tenantId: z.uuid().nullish(),
});
export type ExportRequester = z.input<typeof exportRequester>;

export const openExportInput = z.object({
  backupId: z.uuid(),
  writable: z.boolean().default(false),
  ttlSeconds: z
    .number()
    .int()
    .min(MIN_EXPORT_TTL_SECONDS)
    .max(MAX_EXPORT_TTL_SECONDS)
    .default(DEFAULT_EXPORT_TTL_SECONDS),
  requestedBy: exportRequester,
});
export type OpenExportInput = z.input<typeof openExportInput>;

export interface OpenedNbdExport {
  /** Non-secret ID: for closeExport, listings and the audit trail. */
  id: string;
  /** The secret export name; returned once, never listed. */
  exportName: string;
  /** nbd://host:port/exportName */
  uri: string;
  expiresAt: Date;
  backupId: string;
  tenantId: string;
  writable: boolean;
  /** Bytes the NBD client sees (the volume, padded to whole 512-byte sectors). */
  size: number;
}

export interface ExportSummary {
  id: string;
  backupId: string;
  tenantId: string;
  writable: boolean;
  size: number;
  createdAt: Date;
  expiresAt: Date;
  connections: number;
  requestedBy: { actorType: ActorType; actorId: string | null; actorName: string | null };
}

interface Tracked {
  backupId: string;
  /** The ExportPin row that keeps prune away from the backup while the export is open. */
  pinId: string;
  /** The export's own expiry: the pin is never renewed past it. */
  expiresAt: Date;
  tenantId: string;
  requestedBy: ExportSummary["requestedBy"];
}

export interface ExportManagerOptions {
  catalog: Catalog;
  repositories: RepositoryRegistry;
  /** A listening NBD server (startNbdListener). */
  nbd: NbdServer;
  now?: () => Date;
  maxExports?: number;
  log?: NbdLogger;
  /** This node's name, recorded on the export's pin (default: the host name). */
  node?: string;
  /** Period of the pin renewal (default EXPORT_PIN_RENEW_MS). */
  pinRenewMs?: number;
}

function invalid(err: z.ZodError): BulwarkError {
  return new BulwarkError("BULWARK_NBD_BAD_REQUEST", `invalid export request: ${z.prettifyError(err)}`, {
    details: { issues: err.issues.map((i) => ({ path: i.path.join("."), message: i.message })) },
  });
}

export class ExportManager {
  private readonly tracked = new Map<string, Tracked>();
  private readonly now: () => Date;
  private readonly log: NbdLogger | undefined;
  private readonly renewTimer: NodeJS.Timeout;
  private renewal: Promise<void> = Promise.resolve();
  private pendingRenewals = 0;

  constructor(private readonly opts: ExportManagerOptions) {
    this.now = opts.now ?? (() => new Date());
    this.log = opts.log;
    this.renewTimer = setInterval(() => {
      if (this.pendingRenewals === 0) void this.renewPins();
    }, opts.pinRenewMs ?? EXPORT_PIN_RENEW_MS);
    this.renewTimer.unref();
  }

  async openExport(input: OpenExportInput): Promise<OpenedNbdExport> {
    const parsed = openExportInput.safeParse(input);
    if (!parsed.success) throw invalid(parsed.error);
    const { backupId, writable, ttlSeconds, requestedBy } = parsed.data;
    const actor = {
      actorType: requestedBy.actorType,
      actorId: requestedBy.actorId ?? null,
      actorName: requestedBy.actorName ?? null,
      ip: requestedBy.ip ?? null,
    };
    const row = await this.opts.catalog.backup.findUnique({ where: { id: backupId } });
    const visible = row && (!requestedBy.tenantId || requestedBy.tenantId === row.tenantId);
    const auditTenant = visible ? row.tenantId : requestedBy.tenantId;
    const fail = async (err: BulwarkError): Promise<never> => {
      if (auditTenant) {
        await writeAudit(this.opts.catalog, {
          tenantId: auditTenant,
          ...actor,
          action: "export.nbd.open",
          targetType: "backup",
          targetId: backupId,
          outcome: "FAILURE",
          details: { writable, ttlSeconds, code: err.code },
        });
      }
      throw err;
    };
    if (!visible) {
      return fail(new BulwarkError("BULWARK_NBD_BACKUP_UNAVAILABLE", `backup ${backupId} does not exist`));
    }
    // Pinned before it is served: prune locks the same backup row, so either it saw the pin and
    // keeps the backup, or it marked the backup DELETING first and the pin is refused here.
    const expiresAt = new Date(this.now().getTime() + ttlSeconds * 1000);
    const pinId = row.status === "AVAILABLE" ? await this.pin(backupId, expiresAt) : undefined;
    if (!pinId) {
      return fail(
        new BulwarkError(
          "BULWARK_NBD_BACKUP_UNAVAILABLE",
          row.status === "AVAILABLE"
            ? `backup ${backupId} is being deleted`
            : `backup ${backupId} is ${row.status}, not AVAILABLE`,
          {
            details: { backupId, status: row.status },
          },
        ),
      );
    }
    if (this.tracked.size >= (this.opts.maxExports ?? DEFAULT_MAX_EXPORTS)) {
      await this.unpin(pinId);
      return fail(
        new BulwarkError(
          "BULWARK_NBD_TOO_MANY_CONNECTIONS",
          "this node has as many open exports as it allows",
          {
            details: { maxExports: this.opts.maxExports ?? DEFAULT_MAX_EXPORTS },
          },
        ),
      );
    }
    let opened: Awaited<ReturnType<NbdServer["addExport"]>>;
    try {
      const { repo } = await this.opts.repositories.get(row.repositoryId);
      const point = await repo.readPoint(row.indexRef);
      opened = await this.opts.nbd.addExport({
        source: new PointReader(repo, point),
        writable,
        expiresAt,
        onExpire: (info) => void this.expired(info),
      });
    } catch (err) {
      const e = isBulwarkError(err)
        ? err
        : new BulwarkError("BULWARK_GENERAL_INTERNAL", (err as Error)?.message ?? String(err), {
            cause: err,
          });
      await this.unpin(pinId);
      return fail(e);
    }
    const requester = { actorType: actor.actorType, actorId: actor.actorId, actorName: actor.actorName };
    this.tracked.set(opened.id, {
      backupId,
      pinId,
      expiresAt,
      tenantId: row.tenantId,
      requestedBy: requester,
    });
    try {
      await writeAudit(this.opts.catalog, {
        tenantId: row.tenantId,
        ...actor,
        action: "export.nbd.open",
        targetType: "backup",
        targetId: backupId,
        outcome: "SUCCESS",
        details: { exportId: opened.id, writable, ttlSeconds, expiresAt: opened.expiresAt.toISOString() },
      });
    } catch (err) {
      // An export nobody can account for must not stay open.
      this.tracked.delete(opened.id);
      await this.opts.nbd.removeExport(opened.id).catch(() => undefined);
      await this.unpin(pinId);
      throw err;
    }
    return {
      id: opened.id,
      exportName: opened.name,
      uri: opened.uri,
      expiresAt: opened.expiresAt,
      backupId,
      tenantId: row.tenantId,
      writable,
      size: opened.size,
    };
  }

  /** Ends an export now: its connections are cut and its overlay discarded. */
  async closeExport(id: string, requestedBy: ExportRequester): Promise<ExportSummary> {
    const who = exportRequester.safeParse(requestedBy);
    if (!who.success) throw invalid(who.error);
    const t = this.tracked.get(id);
    const info = this.opts.nbd.getExport(id);
    if (!t || !info || (who.data.tenantId && who.data.tenantId !== t.tenantId)) {
      throw new BulwarkError("BULWARK_NBD_EXPORT_NOT_FOUND", `no open NBD export ${id}`, {
        details: { exportId: id },
      });
    }
    this.tracked.delete(id);
    const closed = await this.opts.nbd.removeExport(id);
    await this.unpin(t.pinId);
    await writeAudit(this.opts.catalog, {
      tenantId: t.tenantId,
      actorType: who.data.actorType,
      actorId: who.data.actorId ?? null,
      actorName: who.data.actorName ?? null,
      ip: who.data.ip ?? null,
      action: "export.nbd.close",
      targetType: "backup",
      targetId: t.backupId,
      outcome: "SUCCESS",
      details: { exportId: id, connections: closed.connections },
    });
    return this.summary(closed, t);
  }

  /** Open exports (never their names), optionally of one tenant. */
  listExports(filter: { tenantId?: string } = {}): ExportSummary[] {
    const out: ExportSummary[] = [];
    for (const info of this.opts.nbd.listExports()) {
      const t = this.tracked.get(info.id);
      if (!t || (filter.tenantId && filter.tenantId !== t.tenantId)) continue;
      out.push(this.summary(info, t));
    }
    return out;
  }

  /** Closes every export (server shutdown), audited as the system. */
  async close(): Promise<void> {
    clearInterval(this.renewTimer);
    for (const [id, t] of [...this.tracked]) await this.closeAsSystem(id, t, "server shutdown");
  }

  /** Ends an export for a reason of the node's own (shutdown, a lost pin), audited as the system. */
  private async closeAsSystem(id: string, t: Tracked, reason: string): Promise<void> {
    if (!this.tracked.delete(id)) return;
    const info = await this.opts.nbd.removeExport(id).catch(() => undefined);
    await this.unpin(t.pinId);
    if (!info) return;
    await writeAudit(this.opts.catalog, {
      tenantId: t.tenantId,
      actorType: "SYSTEM",
      action: "export.nbd.close",
      targetType: "backup",
      targetId: t.backupId,
      outcome: "SUCCESS",
      details: { exportId: id, connections: info.connections, reason },
    }).catch((err) =>
      this.log?.warn({ export: id, err: (err as Error).message }, "audit of export close failed"),
    );
  }

  /**
   * Extends every open export's pin by a lease (run on a timer; public for tests). A pin found
   * gone is made again while its point is AVAILABLE; otherwise the export is closed.
   */
  renewPins(): Promise<void> {
    // One pass at a time; a timer tick that finds one running is skipped (a slow catalog).
    this.pendingRenewals++;
    this.renewal = this.renewal.then(async () => {
      try {
        for (const [id, t] of [...this.tracked]) await this.renewPin(id, t);
      } finally {
        this.pendingRenewals--;
      }
    });
    return this.renewal;
  }

  private async renewPin(id: string, t: Tracked): Promise<void> {
    try {
      if (await renewPin(this.opts.catalog, t.pinId, this.pinUntil(t.expiresAt))) return;
      if (!this.tracked.has(id)) return;
      const again = await this.pin(t.backupId, t.expiresAt);
      if (again && !this.tracked.has(id)) {
        await this.unpin(again); // closed meanwhile
      } else if (again) {
        t.pinId = again;
        this.log?.warn({ export: id }, "export pin was gone; pinned again");
      } else {
        this.log?.warn({ export: id }, "export closed: its pin was gone and its point is being deleted");
        await this.closeAsSystem(id, t, "pin lost");
      }
    } catch (err) {
      // The next renewal tries again; the pin holds until its current expiresAt meanwhile.
      this.log?.warn({ export: id, err: (err as Error).message }, "export pin not renewed");
    }
  }

  /** A pin lasts one lease from now, never past the export's expiry. */
  private pinUntil(exportExpiresAt: Date): Date {
    return new Date(Math.min(this.now().getTime() + EXPORT_PIN_LEASE_MS, exportExpiresAt.getTime()));
  }

  /** Pins an AVAILABLE backup for one lease; undefined when it is not AVAILABLE (any more). */
  private pin(backupId: string, exportExpiresAt: Date): Promise<string | undefined> {
    return pinBackup(
      this.opts.catalog,
      backupId,
      this.opts.node ?? hostname(),
      this.pinUntil(exportExpiresAt),
    );
  }

  /** Best effort: a pin left behind (catalog down) stops counting at its expiresAt anyway. */
  private async unpin(pinId: string): Promise<void> {
    try {
      await this.opts.catalog.exportPin.deleteMany({ where: { id: pinId } });
    } catch (err) {
      this.log?.warn({ pin: pinId, err: (err as Error).message }, "export pin not removed");
    }
  }

  private summary(info: ExportInfo, t: Tracked): ExportSummary {
    return {
      id: info.id,
      backupId: t.backupId,
      tenantId: t.tenantId,
      writable: info.writable,
      size: info.size,
      createdAt: info.createdAt,
      expiresAt: info.expiresAt,
      connections: info.connections,
      requestedBy: t.requestedBy,
    };
  }

  private async expired(info: ExportInfo): Promise<void> {
    const t = this.tracked.get(info.id);
    if (!t) return;
    this.tracked.delete(info.id);
    await this.unpin(t.pinId);
    try {
      await writeAudit(this.opts.catalog, {
        tenantId: t.tenantId,
        actorType: "SYSTEM",
        action: "export.nbd.expire",
        targetType: "backup",
        targetId: t.backupId,
        outcome: "SUCCESS",
        details: {
          exportId: info.id,
          expiresAt: info.expiresAt.toISOString(),
          connections: info.connections,
        },
      });
    } catch (err) {
      this.log?.warn({ export: info.id, err: (err as Error).message }, "audit of export expiry failed");
    }
  }
}
