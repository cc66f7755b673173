// What each role may do in the console: mirrors the server's RBAC table (docs/api.md) so the help
// desk is not shown what it may not do. The server still enforces every call.
import type { Role } from "@bulwark/api";

export type Capability =
  | "enroll"
  | "runBackup"
  | "cancelJob"
  | "restore"
  | "editPolicies"
  | "manageGroups"
  | "viewRepositories"
  | "viewAdmin"
  | "manageUsers";

const GRANTS: Record<Capability, readonly Role[]> = {
  enroll: ["ADMIN", "OPERATOR"],
  runBackup: ["ADMIN", "OPERATOR"],
  cancelJob: ["ADMIN", "OPERATOR"],
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
