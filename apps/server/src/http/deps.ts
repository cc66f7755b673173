// What the REST API needs from the rest of the server, as small interfaces. buildApp receives
// implementations (main.ts wires the real ones), so routes and tests depend on these shapes only.
// A feature whose dependency is not given is not registered at all: no route answers with a
// fake success.

import type { Catalog, Role } from "@bulwark/catalog";
import type { FileSystemReader, Volume } from "@bulwark/filesystems";
import type { Redis } from "ioredis";
import type { WebhookService } from "../alerts/service.js";
import type { LoginRateLimitOptions } from "../auth/rate-limit.js";
import type { SessionLifetime } from "../auth/sessions.js";

export interface AuthSettings {
  /**
   * Secure cookies with the `__Host-` prefix. Only false for a server on plain HTTP on the
   * loopback interface (development); browsers refuse Secure cookies over plain HTTP.
   */
  secureCookies: boolean;
  session: SessionLifetime;
  loginRateLimit: LoginRateLimitOptions;
}

/** Who did something, for services that audit their own changes. */
export interface Actor {
  tenantId: string;
  userId: string;
  /** Shown in the audit log; an e-mail address, never a credential. */
  name: string;
  via: "session" | "api-token";
  ip: string | null;
}

export interface MintedEnrollmentToken {
  id: string;
  expiresAt: Date;
  /** The token file for `bulwark-agent enroll --token-file` (holds the token: shown once). */
  tokenFile: string;
}

/**
 * Minting and revoking enrollment tokens (apps/server/src/enrollment); implementations write
 * their own audit rows. Listing reads the catalog directly.
 */
export interface EnrollmentTokens {
  mint(
    actor: Actor,
    input: { groupId?: string; tags?: string[]; ttlSeconds: number },
  ): Promise<MintedEnrollmentToken>;
  /** Throws BulwarkError when the token is unknown in the tenant. */
  revoke(actor: Actor, id: string): Promise<void>;
}

/** Agent revocation (apps/server/src/enrollment): marks the agent and its certificates revoked and closes its stream. */
export interface AgentRevocation {
  revoke(actor: Actor, agentId: string): Promise<void>;
}

/** Scheduling (apps/server/src/jobs): keeps BullMQ job schedulers in step with policies and assignments. */
export interface PolicySchedules {
  syncPolicy(policyId: string): Promise<void>;
}

export interface RestoreInput {
  backupId: string;
  agentId?: string;
  targetPath: string;
  mode: "full" | "delta";
  allowForeignTarget?: boolean;
  wholeDisk?: boolean;
  idempotencyKey?: string;
}

/** Starting and stopping jobs (apps/server/src/jobs). Each returns the catalog Job row's ID. */
export interface JobControl {
  backupNow?(actor: Actor, input: { agentId: string; volumeId: string }): Promise<{ jobId: string }>;
  restore?(actor: Actor, input: RestoreInput): Promise<{ jobId: string }>;
  /** Idempotent; BULWARK_JOB_ALREADY_FINISHED for a job that ended otherwise (docs/jobs.md, "Cancel"). */
  cancel?(actor: Actor, jobId: string): Promise<void>;
  /** A new job with the old one's parameters (docs/jobs.md, "Retry"). */
  retry?(actor: Actor, jobId: string): Promise<{ jobId: string }>;
}

/** Whether an agent's control stream is held by some node right now (apps/server/src/control). */
export interface AgentPresence {
  isOnline(agentId: string): Promise<boolean>;
}

export interface OpenedExport {
  id: string;
  uri: string;
  backupId: string;
  writable: boolean;
  size: number;
  expiresAt: Date;
}

export interface ExportRow {
  id: string;
  backupId: string;
  writable: boolean;
  size: number;
  createdAt: Date;
  expiresAt: Date;
  connections: number;
  requestedBy: { actorType: string; actorId: string | null; actorName: string | null };
}

/**
 * This node's NBD exports (apps/server/src/exports, ExportManager). Implementations audit opens
 * and closes and scope everything to the actor's tenant; unknown IDs throw BulwarkErrors.
 */
export interface RestorePointExports {
  open(
    actor: Actor,
    input: { backupId: string; writable: boolean; ttlSeconds: number },
  ): Promise<OpenedExport>;
  close(actor: Actor, id: string): Promise<void>;
  list(tenantId: string): ExportRow[];
}

/**
 * File-level restore (apps/server/src/files, RestorePointFiles): a restore point's layout and its
 * filesystems, read from the repository in userspace. Unknown or foreign backups throw BulwarkErrors.
 * The lease keeps the point open (and pinned against prune) until it is released.
 */
export interface RestorePointFileAccess {
  lease(
    tenantId: string,
    backupId: string,
  ): Promise<{
    volume: Volume;
    filesystem(partition?: number): Promise<{ partition: number; reader: FileSystemReader }>;
    release(): void;
  }>;
}

/** BullMQ job counts per queue and state for /metrics (apps/server/src/metrics/queues.ts). */
export interface QueueDepths {
  jobCounts(): Promise<{ queue: string; counts: Record<string, number> }[]>;
}

export interface ApiDeps {
  catalog: Catalog;
  redis: Redis;
  now: () => Date;
  auth: AuthSettings;
  enrollmentTokens?: EnrollmentTokens;
  agentRevocation?: AgentRevocation;
  policySchedules?: PolicySchedules;
  jobs?: JobControl;
  exports?: RestorePointExports;
  files?: RestorePointFileAccess;
  queueDepths?: QueueDepths;
  /** Webhook alert endpoints (apps/server/src/alerts): sealed secrets and test pings. */
  webhooks?: WebhookService;
}

export type { Role };
