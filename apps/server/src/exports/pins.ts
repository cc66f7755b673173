import type { Catalog } from "@bulwark/catalog";

// ExportPin rows keep prune, and so GC, away from a restore point while this node serves it (NBD
// exports, file-level restore; docs/jobs.md "Prune"). A pin counts until its expiresAt: holders
// renew it on a timer, so a node that dies holds its points for one lease at most.

/**
 * Pins a backup until `expiresAt`, only while it is AVAILABLE: the row lock orders this against
 * prune marking it DELETING, so a point is either pinned first and kept, or refused here.
 */
export async function pinBackup(
  catalog: Catalog,
  backupId: string,
  node: string,
  expiresAt: Date,
): Promise<string | undefined> {
  return catalog.$transaction(async (tx) => {
    const locked = await tx.$queryRaw<{ status: string }[]>`
      SELECT status::text AS status FROM backups WHERE id = ${backupId}::uuid FOR UPDATE`;
    if (locked[0]?.status !== "AVAILABLE") return undefined;
    const pin = await tx.exportPin.create({ data: { backupId, node, expiresAt }, select: { id: true } });
    return pin.id;
  });
}

/** Extends a pin; false when its row is gone (a prune removed it once it had expired). */
export async function renewPin(catalog: Catalog, pinId: string, expiresAt: Date): Promise<boolean> {
  const renewed = await catalog.exportPin.updateMany({ where: { id: pinId }, data: { expiresAt } });
  return renewed.count === 1;
}
