// What each role may do in the console: mirrors the server's RBAC table (docs/api.md) so the help
// desk is not shown what it may not do. The server still enforces every call.
import { HELPDESK_JOB_KINDS, type Job, type Role } from "@bulwark/api";

export type Capability =
  | "enroll"
  | "runBackup"
  | "restore"
  | "editPolicies"
  | "manageGroups"
  | "viewRepositories"
  | "viewAdmin"
  | "manageUsers";

const GRANTS: Record<Capability, readonly Role[]> = {
  enroll: ["ADMIN", "OPERATOR"],
  runBackup: ["ADMIN", "OPERATOR"],
  restore: ["ADMIN", "OPERATOR", "HELPDESK"],
  editPolicies: ["ADMIN", "OPERATOR"],
  // Groups, and a machine's groups and tags.
  manageGroups: ["ADMIN", "OPERATOR"],
  viewRepositories: ["ADMIN", "OPERATOR", "AUDITOR"],
  // Users and the audit log: admins manage, auditors read.
  viewAdmin: ["ADMIN", "AUDITOR"],
  manageUsers: ["ADMIN"],
};

export function can(role: Role, capability: Capability): boolean {
  return GRANTS[capability].includes(role);
}

/**
 * Cancel and retry a job: whoever may start a kind may cancel and retry it (admins and operators
 * every kind, the help desk the restores it starts, auditors none).
 */
export function canControlJob(role: Role, kind: Job["kind"]): boolean {
  if (role === "ADMIN" || role === "OPERATOR") return true;
  return role === "HELPDESK" && (HELPDESK_JOB_KINDS as readonly string[]).includes(kind);
}
