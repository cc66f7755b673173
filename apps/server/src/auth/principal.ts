// Who is making a request, once the session cookie or API token has been checked.

import type { Role } from "@bulwark/catalog";

export interface PrincipalUser {
  id: string;
  tenantId: string;
  email: string;
  displayName: string;
  role: Role;
}

export type Principal =
  | { via: "session"; user: PrincipalUser; role: Role; sessionId: string; csrfTokenHash: string }
  | { via: "api-token"; user: PrincipalUser; role: Role; apiTokenId: string };

/**
 * The role an API token acts with: its own narrower role when set and not wider than its owner's
 * current role, else the owner's (demoting a user also demotes every token of theirs).
 */
export function effectiveTokenRole(ownerRole: Role, tokenRole: Role | null): Role {
  if (tokenRole === null) return ownerRole;
  return isNarrowerOrEqual(tokenRole, ownerRole) ? tokenRole : ownerRole;
}

/**
 * True when `role` grants no more than `than`. HELPDESK and AUDITOR are not ordered by power
 * (helpdesk starts restores, auditor reads the audit log), so each is only narrower than itself,
 * OPERATOR and ADMIN.
 */
export function isNarrowerOrEqual(role: Role, than: Role): boolean {
  if (role === than) return true;
  if (than === "ADMIN") return true;
  if (than === "OPERATOR") return role === "HELPDESK";
  return false;
}
