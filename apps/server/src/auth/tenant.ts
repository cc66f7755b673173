// Single-tenant deployments use one Tenant row with slug "default", created on first use. Every
// query still filters by tenant, so several tenants stay possible later.

import type { Catalog } from "@bulwark/catalog";

export const DEFAULT_TENANT_SLUG = "default";

/** The default tenant's ID, creating the row if missing (safe when several nodes race: upsert on the unique slug). */
export async function ensureDefaultTenant(catalog: Catalog): Promise<string> {
  try {
    const tenant = await catalog.tenant.upsert({
      where: { slug: DEFAULT_TENANT_SLUG },
      update: {},
      create: { slug: DEFAULT_TENANT_SLUG, name: "Default" },
      select: { id: true },
    });
    return tenant.id;
  } catch (err) {
    // Two first requests racing: one insert wins, the other hits the unique slug; read the winner.
    const existing = await catalog.tenant.findUnique({
      where: { slug: DEFAULT_TENANT_SLUG },
      select: { id: true },
    });
    if (existing) return existing.id;
    throw err;
  }
}
