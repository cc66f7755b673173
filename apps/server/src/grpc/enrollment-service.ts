import { BulwarkError } from "@bulwark/errors";
import {
  type EnrollmentServiceServer,
  type IdentityServiceServer,
  negotiateProtocol,
  toServiceError,
} from "@bulwark/protocol";
import type { ServerUnaryCall, sendUnaryData } from "@grpc/grpc-js";
import type { EnrollmentContext } from "../enrollment/context.js";
import { enrollAgent } from "../enrollment/enroll.js";
import { renewCertificate } from "../enrollment/renew.js";
import type { AgentIdentityResolver } from "./identity.js";

// EnrollmentService (enroll listener, no client certificate) and IdentityService (agent listener,
// mTLS). Handlers check the protocol version, bound how much CSR work runs at once, and hand
// typed requests to the enrollment module. Tokens, CSRs and certificates are never logged.

/** Oldest protocol minor this server accepts. */
const MIN_SUPPORTED_MINOR = 0;
/**
 * Enrollments and renewals in progress at once per listener. Each costs a signature check, a
 * signature and a short transaction; a burst beyond this (a fleet rollout, or someone hammering
 * the unauthenticated enroll port) is refused with BULWARK_ENROLL_BUSY instead of queueing.
 */
export const MAX_CONCURRENT_IDENTITY_CALLS = 8;

/** Admits at most `limit` calls at once and refuses the rest (no queue: a refused agent retries later). */
export class Gate {
  private inFlight = 0;
  constructor(private readonly limit: number) {}
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.inFlight >= this.limit) {
      throw new BulwarkError(
        "BULWARK_ENROLL_BUSY",
        "too many enrollments in progress; retry in a few seconds",
      );
    }
    this.inFlight++;
    try {
      return await work();
    } finally {
      this.inFlight--;
    }
  }
}

/** The peer's IP for the audit log only (never for identity): grpc-js gives "ip:port" or "[v6]:port". */
function peerIp(call: { getPeer(): string }): string | undefined {
  const peer = call.getPeer();
  const m = /^\[?([^\]]+?)\]?:\d+$/.exec(peer);
  return m?.[1];
}

function logRefusal(ctx: EnrollmentContext, rpc: string, err: unknown): void {
  if (err instanceof BulwarkError)
    ctx.log.info({ rpc, code: err.code, msg: err.message }, "identity call refused");
  else ctx.log.error({ rpc, err }, "identity call failed");
}

export function enrollmentService(ctx: EnrollmentContext): EnrollmentServiceServer {
  const gate = new Gate(MAX_CONCURRENT_IDENTITY_CALLS);
  return {
    getServerCa: (
      call: ServerUnaryCall<unknown, unknown>,
      callback: sendUnaryData<{ caCertificatePem: string }>,
    ) => {
      try {
        negotiateProtocol(call.metadata, MIN_SUPPORTED_MINOR);
        callback(null, { caCertificatePem: ctx.serverTrustPem.join("") });
      } catch (err) {
        callback(toServiceError(err));
      }
    },
    enroll: (call, callback) => {
      Promise.resolve()
        .then(() => negotiateProtocol(call.metadata, MIN_SUPPORTED_MINOR))
        .then(() => gate.run(() => enrollAgent(ctx, call.request, { ip: peerIp(call) })))
        .then(
          (res) => {
            ctx.log.info({ agentId: res.agentId }, "agent enrolled");
            callback(null, res);
          },
          (err: unknown) => {
            logRefusal(ctx, "Enroll", err);
            callback(toServiceError(err));
          },
        );
    },
  };
}

export function identityService(
  ctx: EnrollmentContext,
  identity: AgentIdentityResolver,
): IdentityServiceServer {
  const gate = new Gate(MAX_CONCURRENT_IDENTITY_CALLS);
  return {
    renew: (call, callback) => {
      Promise.resolve()
        .then(() => negotiateProtocol(call.metadata, MIN_SUPPORTED_MINOR))
        .then(() => identity.resolve(call))
        .then((agent) => gate.run(() => renewCertificate(ctx, agent, call.request)))
        .then(
          (res) => callback(null, res),
          (err: unknown) => {
            logRefusal(ctx, "Renew", err);
            callback(toServiceError(err));
          },
        );
    },
  };
}
