// Catalog row types by their model names (@bulwark/catalog exports them on its Prisma namespace).
import type { Prisma } from "@bulwark/catalog";

export type Agent = Prisma.AgentModel;
export type ApiToken = Prisma.ApiTokenModel;
export type AuditEvent = Prisma.AuditEventModel;
export type Backup = Prisma.BackupModel;
export type Group = Prisma.GroupModel;
export type Job = Prisma.JobModel;
export type Policy = Prisma.PolicyModel;
export type PolicyAssignment = Prisma.PolicyAssignmentModel;
export type User = Prisma.UserModel;
