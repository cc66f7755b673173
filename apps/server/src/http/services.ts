// Adapters from the server's real services to the small interfaces the REST API takes
// (deps.ts). main.ts builds them once the job system, the enrollment endpoint and the control
// plane exist, and passes them to buildApp as `api: { ...apiServices(...) }`.

import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import { revokeAgent } from "../enrollment/revoke.js";
import type { EnrollmentEndpoint } from "../enrollment/token.js";
import {
  type Actor as EnrollmentActor,
  mintEnrollmentToken,
  revokeEnrollmentToken,
} from "../enrollment/tokens.js";
import type { ExportManager } from "../exports/manager.js";
import type { RestoreRequest } from "../jobs/enqueue.js";
import type {
  Actor,
  AgentRevocation,
  EnrollmentTokens,
  JobControl,
  PolicySchedules,
  RestorePointExports,
} from "./deps.js";
import type { ApiOptions } from "./index.js";

/** The part of the job system (jobs/system.ts JobSystem) the API calls. */
export interface JobSystemApi {
  syncPolicySchedules(policyId: string): Promise<unknown>;
  enqueueBackupNow(agentId: string, volumeId: string, requestedById: string | null): Promise<string>;
  enqueueRestore(req: RestoreRequest): Promise<string>;
  cancel(jobId: string, actor: { userId: string | null; name: string }): Promise<void>;
  retry(jobId: string, requestedById: string | null): Promise<string>;
}

/**
 * A job system that starts in the background (main.ts): calls before it is up are refused with
 * BULWARK_QUEUE_UNAVAILABLE instead of being lost.
 */
export function jobSystemWhenStarted(current: () => JobSystemApi | undefined): JobSystemApi {
  const get = (): JobSystemApi => {
    const jobs = current();
    if (!jobs)
      throw new BulwarkError("BULWARK_QUEUE_UNAVAILABLE", "the job system is not started yet on this node");
    return jobs;
  };
  return {
    syncPolicySchedules: (policyId) => get().syncPolicySchedules(policyId),
    enqueueBackupNow: (agentId, volumeId, requestedById) =>
      get().enqueueBackupNow(agentId, volumeId, requestedById),
    enqueueRestore: (req) => get().enqueueRestore(req),
    cancel: (jobId, actor) => get().cancel(jobId, actor),
    retry: (jobId, requestedById) => get().retry(jobId, requestedById),
  };
}

export interface ApiServiceSources {
  catalog: Catalog;
  now: () => Date;
  /** The node's job system (JobSystem.start); without it run-now, restores and schedule sync are off. */
  jobs?: JobSystemApi;
  /** Where agents enroll (pki/server-pki.ts prepareServerPki(...).endpoint); without it no enrollment tokens. */
  enrollmentEndpoint?: EnrollmentEndpoint;
  /** Closes a revoked agent's control streams on every node (ControlPlane.closeAgentStreams). */
  onAgentRevoked?: (agentId: string) => void | Promise<void>;
  /** This node's NBD export manager (startNbdListener(...).exports); without it no instant access. */
  exports?: Pick<ExportManager, "openExport" | "closeExport" | "listExports">;
}

function enrollmentActor(actor: Actor): EnrollmentActor {
  return { type: actor.via === "api-token" ? "API_TOKEN" : "USER", id: actor.userId, name: actor.name };
}

export function apiServices(
  src: ApiServiceSources,
): Pick<ApiOptions, "enrollmentTokens" | "agentRevocation" | "policySchedules" | "jobs" | "exports"> {
  const { catalog, now, jobs, enrollmentEndpoint } = src;
  const enrollmentTokens: EnrollmentTokens | undefined = enrollmentEndpoint && {
    mint: (actor, input) =>
      mintEnrollmentToken(
        catalog,
        { tenantId: actor.tenantId, createdById: actor.userId, ...input },
        { endpoint: enrollmentEndpoint, now, actor: enrollmentActor(actor) },
      ),
    revoke: async (actor, id) => {
      await revokeEnrollmentToken(
        catalog,
        { tenantId: actor.tenantId, tokenId: id },
        { now, actor: enrollmentActor(actor) },
      );
    },
  };
  const agentRevocation: AgentRevocation = {
    revoke: async (actor, agentId) => {
      await revokeAgent(catalog, agentId, {
        tenantId: actor.tenantId,
        actor: enrollmentActor(actor),
        now,
        onRevoked: src.onAgentRevoked,
      });
    },
  };
  const policySchedules: PolicySchedules | undefined = jobs && {
    syncPolicy: async (policyId) => {
      await jobs.syncPolicySchedules(policyId);
    },
  };
  const jobControl: JobControl | undefined = jobs && {
    backupNow: async (actor, input) => ({
      jobId: await jobs.enqueueBackupNow(input.agentId, input.volumeId, actor.userId),
    }),
    restore: async (actor, input) => ({
      jobId: await jobs.enqueueRestore({ ...input, requestedById: actor.userId }),
    }),
    cancel: (actor, jobId) => jobs.cancel(jobId, { userId: actor.userId, name: actor.name }),
    retry: async (actor, jobId) => ({ jobId: await jobs.retry(jobId, actor.userId) }),
  };
  const manager = src.exports;
  const requester = (actor: Actor) => ({
    actorType: actor.via === "api-token" ? ("API_TOKEN" as const) : ("USER" as const),
    actorId: actor.userId,
    actorName: actor.name,
    ip: actor.ip,
    tenantId: actor.tenantId,
  });
  const exports: RestorePointExports | undefined = manager && {
    open: (actor, input) => manager.openExport({ ...input, requestedBy: requester(actor) }),
    close: async (actor, id) => {
      await manager.closeExport(id, requester(actor));
    },
    list: (tenantId) => manager.listExports({ tenantId }),
  };
  return { enrollmentTokens, agentRevocation, policySchedules, jobs: jobControl, exports };
}
