// Typed calls for each /api/v1 route the console uses, over the shared zod contracts.
import {
  agentDetailSchema,
  agentSchema,
  apiTokenSchema,
  assignmentSchema,
  auditEventSchema,
  backupSchema,
  type CreatePolicyRequest,
  createApiTokenResponseSchema,
  createEnrollmentTokenResponseSchema,
  enrollmentTokenSchema,
  fileListingSchema,
  fileSearchResultSchema,
  groupSchema,
  jobLogPageSchema,
  jobSchema,
  loginResponseSchema,
  MAX_PAGE_SIZE,
  meResponseSchema,
  pageSchema,
  policySchema,
  type Role,
  repositoryStatusSchema,
  type StartRestoreRequest,
  type UpdatePolicyRequest,
  userSchema,
  volumeLayoutSchema,
} from "@bulwark/api";
import { z } from "zod";
import { apiUrl, type Query, request } from "./client";

/**
 * Lists used whole (pickers, the dashboard) ask for the largest page the API serves
 * (MAX_PAGE_SIZE); paged lists pass their own `limit` and `cursor`.
 */
const LIST_LIMIT = MAX_PAGE_SIZE;
const noContent = z.unknown();

/** `?limit=&cursor=` of a paged list (see ui/paging.tsx). */
export type PageQuery = { limit?: number; cursor?: string };

const list = <S extends z.ZodType>(path: string, item: S, query: Query = {}, signal?: AbortSignal) =>
  request("GET", path, pageSchema(item), { query: { limit: LIST_LIMIT, ...query }, signal });

export const api = {
  login: (email: string, password: string) =>
    request("POST", "/auth/login", loginResponseSchema, { body: { email, password } }),
  logout: () => request("POST", "/auth/logout", noContent),
  me: (signal?: AbortSignal) => request("GET", "/auth/me", meResponseSchema, { signal }),

  agents: (
    q: { search?: string; group?: string; tag?: string; status?: string } & PageQuery,
    signal?: AbortSignal,
  ) => list("/agents", agentSchema, q, signal),
  agent: (id: string, signal?: AbortSignal) =>
    request("GET", `/agents/${encodeURIComponent(id)}`, agentDetailSchema, { signal }),
  updateAgent: (id: string, body: { tags?: string[]; groupIds?: string[] }) =>
    request("PATCH", `/agents/${encodeURIComponent(id)}`, agentDetailSchema, { body }),
  groups: (signal?: AbortSignal) => list("/groups", groupSchema, {}, signal),
  createGroup: (body: { name: string; description?: string }) =>
    request("POST", "/groups", groupSchema, { body }),
  enrollmentTokens: (signal?: AbortSignal) =>
    list("/enrollment-tokens", enrollmentTokenSchema, { active: "true" }, signal),
  createEnrollmentToken: (body: { groupId?: string; tags?: string[]; ttlSeconds: number }) =>
    request("POST", "/enrollment-tokens", createEnrollmentTokenResponseSchema, { body }),

  backups: (
    q: { agentId?: string; volumeId?: string; from?: string; to?: string } & PageQuery,
    signal?: AbortSignal,
  ) => list("/backups", backupSchema, { ...q, status: "AVAILABLE" }, signal),
  backup: (id: string, signal?: AbortSignal) =>
    request("GET", `/backups/${encodeURIComponent(id)}`, backupSchema, { signal }),

  volumeLayout: (backupId: string, signal?: AbortSignal) =>
    request("GET", `/backups/${encodeURIComponent(backupId)}/volume`, volumeLayoutSchema, { signal }),
  files: (backupId: string, path: string, partition: number | undefined, signal?: AbortSignal) =>
    request("GET", `/backups/${encodeURIComponent(backupId)}/files`, fileListingSchema, {
      query: { path, partition },
      signal,
    }),
  searchFiles: (backupId: string, pattern: string, partition: number | undefined, signal?: AbortSignal) =>
    request("GET", `/backups/${encodeURIComponent(backupId)}/files/search`, fileSearchResultSchema, {
      query: { pattern, partition },
      signal,
    }),
  /** Plain links (the browser downloads them with the session cookie; GETs need no CSRF token). */
  fileContentUrl: (backupId: string, path: string, partition: number | undefined) =>
    apiUrl(`/backups/${encodeURIComponent(backupId)}/files/content`, { path, partition }),
  archiveUrl: (backupId: string, path: string, partition: number | undefined, format: "tar" | "zip") =>
    apiUrl(`/backups/${encodeURIComponent(backupId)}/files/archive`, { path, partition, format }),

  jobs: (
    q: { agentId?: string; state?: string; kind?: string; from?: string; to?: string } & PageQuery,
    signal?: AbortSignal,
  ) => list("/jobs", jobSchema, q, signal),
  job: (id: string, signal?: AbortSignal) =>
    request("GET", `/jobs/${encodeURIComponent(id)}`, jobSchema, { signal }),
  runBackup: (agentId: string, volumeId: string) =>
    request("POST", "/jobs/backup", jobSchema, { body: { agentId, volumeId } }),
  startRestore: (body: StartRestoreRequest) => request("POST", "/jobs/restore", jobSchema, { body }),
  cancelJob: (id: string) => request("POST", `/jobs/${encodeURIComponent(id)}/cancel`, jobSchema),
  /** A new job with the same parameters (202); its retryOfId names this one. */
  retryJob: (id: string) => request("POST", `/jobs/${encodeURIComponent(id)}/retry`, jobSchema),
  /** Log lines with seq > afterSeq, oldest first. */
  jobLog: (id: string, afterSeq: number, signal?: AbortSignal) =>
    request("GET", `/jobs/${encodeURIComponent(id)}/log`, jobLogPageSchema, {
      query: { afterSeq, limit: MAX_PAGE_SIZE },
      signal,
    }),
  jobEventsUrl: (id: string) => apiUrl(`/jobs/${encodeURIComponent(id)}/events`),

  policies: (q: { search?: string } & PageQuery, signal?: AbortSignal) =>
    list("/policies", policySchema, q, signal),
  policy: (id: string, signal?: AbortSignal) =>
    request("GET", `/policies/${encodeURIComponent(id)}`, policySchema, { signal }),
  createPolicy: (body: CreatePolicyRequest) => request("POST", "/policies", policySchema, { body }),
  updatePolicy: (id: string, body: UpdatePolicyRequest) =>
    request("PATCH", `/policies/${encodeURIComponent(id)}`, policySchema, { body }),
  assignments: (policyId: string, signal?: AbortSignal) =>
    list("/assignments", assignmentSchema, { policyId }, signal),
  assign: (policyId: string, groupId: string) =>
    request("POST", "/assignments", assignmentSchema, { body: { policyId, groupId } }),
  unassign: (id: string) => request("DELETE", `/assignments/${encodeURIComponent(id)}`, noContent),

  repositories: (signal?: AbortSignal) => list("/repositories", repositoryStatusSchema, {}, signal),
  users: (q: { role?: string; search?: string } & PageQuery, signal?: AbortSignal) =>
    list("/users", userSchema, q, signal),
  createUser: (body: { email: string; displayName: string; role: Role; password: string }) =>
    request("POST", "/users", userSchema, { body }),
  updateUser: (id: string, body: { role?: Role; disabled?: boolean }) =>
    request("PATCH", `/users/${encodeURIComponent(id)}`, userSchema, { body }),
  /** `all`: every user's tokens (admins and auditors), else the caller's own. */
  apiTokens: (q: { all?: boolean } & PageQuery, signal?: AbortSignal) =>
    list("/api-tokens", apiTokenSchema, { ...q, all: q.all ? "true" : undefined }, signal),
  createApiToken: (body: { name: string; role?: Role; ttlSeconds?: number }) =>
    request("POST", "/api-tokens", createApiTokenResponseSchema, { body }),
  revokeApiToken: (id: string) => request("DELETE", `/api-tokens/${encodeURIComponent(id)}`, noContent),
  audit: (
    q: { action?: string; outcome?: string; from?: string; to?: string } & PageQuery,
    signal?: AbortSignal,
  ) => list("/audit-events", auditEventSchema, q, signal),
};
