// The one table of who may call what on /api/v1. Every route registered under /api/v1 must have
// an entry here: a route without one makes the server fail at start-up (see http/rbac.ts), so
// nothing can be exposed unprotected by accident. docs/api.md's roles table is checked against
// this table by a test.
//
// Roles (issue 5): ADMIN everything; OPERATOR fleet, policies, backups, restores and jobs but no
// user management; HELPDESK reads machines, restore points and jobs and starts restores, never
// deletes or changes policy; AUDITOR reads everything, including the audit log, and changes nothing
// (except its own sessions and API tokens).

import type { JobKind, Role } from "@bulwark/catalog";

export const API_PREFIX = "/api/v1";

/** Reachable without credentials (only the login itself). */
export const PUBLIC = "public" as const;

const ALL: readonly Role[] = ["ADMIN", "OPERATOR", "HELPDESK", "AUDITOR"];
const READERS: readonly Role[] = ALL;
const FLEET_WRITERS: readonly Role[] = ["ADMIN", "OPERATOR"];
const ADMIN_ONLY: readonly Role[] = ["ADMIN"];
const RESTORERS: readonly Role[] = ["ADMIN", "OPERATOR", "HELPDESK"];

export type Permission = typeof PUBLIC | readonly Role[];

/** Key: "<METHOD> <route pattern without the /api/v1 prefix>". */
export const PERMISSIONS: Readonly<Record<string, Permission>> = {
  // auth: everyone manages their own session
  "POST /auth/login": PUBLIC,
  "POST /auth/logout": ALL,
  "GET /auth/me": ALL,
  "GET /auth/sessions": ALL,
  "DELETE /auth/sessions/:id": ALL,

  // users: admins manage, auditors may read (to know who the actors in the audit log are)
  "GET /users": ["ADMIN", "AUDITOR"],
  "GET /users/:id": ["ADMIN", "AUDITOR"],
  "POST /users": ADMIN_ONLY,
  "PATCH /users/:id": ADMIN_ONLY,
  "DELETE /users/:id": ADMIN_ONLY,

  // API tokens: own tokens for everyone (acting with at most the owner's role); admins see and revoke all
  "GET /api-tokens": ALL,
  "POST /api-tokens": ALL,
  "DELETE /api-tokens/:id": ALL,

  // enrollment tokens let machines join: fleet writers only
  "GET /enrollment-tokens": ["ADMIN", "OPERATOR", "AUDITOR"],
  "POST /enrollment-tokens": FLEET_WRITERS,
  "DELETE /enrollment-tokens/:id": FLEET_WRITERS,

  // machines
  "GET /agents": READERS,
  "GET /agents/:id": READERS,
  "PATCH /agents/:id": FLEET_WRITERS,
  "POST /agents/:id/revoke": FLEET_WRITERS,

  // groups
  "GET /groups": READERS,
  "GET /groups/:id": READERS,
  "POST /groups": FLEET_WRITERS,
  "PATCH /groups/:id": FLEET_WRITERS,
  "DELETE /groups/:id": FLEET_WRITERS,
  "PUT /groups/:id/members/:agentId": FLEET_WRITERS,
  "DELETE /groups/:id/members/:agentId": FLEET_WRITERS,

  // policies and assignments
  "GET /policies": READERS,
  "GET /policies/:id": READERS,
  "POST /policies": FLEET_WRITERS,
  "PATCH /policies/:id": FLEET_WRITERS,
  "DELETE /policies/:id": FLEET_WRITERS,
  "GET /assignments": READERS,
  "POST /assignments": FLEET_WRITERS,
  "DELETE /assignments/:id": FLEET_WRITERS,

  // restore points
  "GET /backups": READERS,
  "GET /backups/:id": READERS,
  "DELETE /backups/:id": FLEET_WRITERS,

  // jobs: helpdesk starts restores, never backups. Who may start a kind may cancel and retry it:
  // the route admits the roles that start some kind, the handler checks the job's kind
  // (JOB_KIND_STARTERS below).
  "GET /jobs": READERS,
  "GET /jobs/:id": READERS,
  "GET /jobs/:id/events": READERS,
  "GET /jobs/:id/log": READERS,
  "POST /jobs/backup": FLEET_WRITERS,
  "POST /jobs/restore": ["ADMIN", "OPERATOR", "HELPDESK"],
  "POST /jobs/:id/cancel": ["ADMIN", "OPERATOR", "HELPDESK"],
  "POST /jobs/:id/retry": ["ADMIN", "OPERATOR", "HELPDESK"],

  // instant access over NBD: a copy-on-write view, never a change to the restore point
  "POST /backups/:id/exports": ["ADMIN", "OPERATOR", "HELPDESK"],
  "GET /exports": READERS,

  // file-level restore: reading a machine's files is a restore, so the roles that restore (not auditors)
  "GET /backups/:id/volume": RESTORERS,
  "GET /backups/:id/files": RESTORERS,
  "GET /backups/:id/files/search": RESTORERS,
  "GET /backups/:id/files/content": RESTORERS,
  "GET /backups/:id/files/archive": RESTORERS,
  "POST /exports/:id/close": ["ADMIN", "OPERATOR", "HELPDESK"],

  // storage
  "GET /repositories": ["ADMIN", "OPERATOR", "AUDITOR"],

  // audit log
  "GET /audit-events": ["ADMIN", "AUDITOR"],

  // monitoring: Prometheus scrapes with an auditor's API token (read-only, whole tenant)
  "GET /metrics": ["ADMIN", "OPERATOR", "AUDITOR"],

  // alert webhooks: admins manage them (a URL that receives fleet failures); auditors read them
  "GET /webhooks": ["ADMIN", "AUDITOR"],
  "GET /webhooks/:id": ["ADMIN", "AUDITOR"],
  "POST /webhooks": ADMIN_ONLY,
  "PATCH /webhooks/:id": ADMIN_ONLY,
  "DELETE /webhooks/:id": ADMIN_ONLY,
  "POST /webhooks/:id/test": ADMIN_ONLY,
  "GET /webhooks/:id/deliveries": ["ADMIN", "AUDITOR"],
};

/**
 * Who may start (and so cancel and retry) a job of each kind. Restores are the help desk's;
 * backups and maintenance (verify, GC, prune) are the fleet writers'.
 */
export const JOB_KIND_STARTERS: Readonly<Record<JobKind, readonly Role[]>> = {
  BACKUP: FLEET_WRITERS,
  RESTORE: RESTORERS,
  VERIFY: FLEET_WRITERS,
  GC: FLEET_WRITERS,
  PRUNE: FLEET_WRITERS,
};

/** The permission for a registered route, or undefined when the table has no entry. HEAD is GET's. */
export function permissionFor(method: string, url: string): Permission | undefined {
  const verb = method === "HEAD" ? "GET" : method;
  const path = url.startsWith(API_PREFIX) ? url.slice(API_PREFIX.length) : url;
  return PERMISSIONS[`${verb} ${path}`];
}

export function isAllowed(permission: Permission, role: Role): boolean {
  return permission === PUBLIC || permission.includes(role);
}
