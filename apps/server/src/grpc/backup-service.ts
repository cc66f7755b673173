import { once } from "node:events";
import { BulwarkError } from "@bulwark/errors";
import {
  type BackupServiceServer,
  type CallWithAuthContext,
  type CommitRequest,
  type CommitResponse,
  failStream,
  negotiateProtocol,
  toServiceError,
  type UploadChunksRequest,
} from "@bulwark/protocol";
import type {
  Metadata,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  sendUnaryData,
} from "@grpc/grpc-js";
import { beginSession } from "../ingest/begin.js";
import { CommitStream } from "../ingest/commit.js";
import { abortSession, queryMissing } from "../ingest/query.js";
import type { IngestContext } from "../ingest/sessions.js";
import { checkBatchLimits, openUploadStream } from "../ingest/upload.js";
import { messages } from "./call-messages.js";
import type { AgentIdentity, AgentIdentityResolver } from "./identity.js";

// The BackupService on the agent listener. Every call first checks the protocol version and the
// caller's identity (from its client certificate, resolved anew on every call), then hands a
// typed request to the ingest module. Errors leave as gRPC statuses with the Bulwark code.

/**
 * Batches of one UploadChunks stream processed at once: two let the codec workers hash one batch
 * while the other is written, and bound a stream's memory to two batches (16 MiB) beside the
 * HTTP/2 window.
 */
const UPLOAD_PIPELINE_DEPTH = 2;

/** Oldest protocol minor this server accepts. */
const MIN_SUPPORTED_MINOR = 0;

async function authorize(
  identity: AgentIdentityResolver,
  call: CallWithAuthContext & { metadata: Metadata },
): Promise<AgentIdentity> {
  negotiateProtocol(call.metadata, MIN_SUPPORTED_MINOR);
  return identity.resolve(call);
}

export function backupService(ctx: IngestContext, identity: AgentIdentityResolver): BackupServiceServer {
  const logFailure = (rpc: string, err: unknown) => {
    if (err instanceof BulwarkError)
      ctx.log.info({ rpc, code: err.code, msg: err.message }, "backup call refused");
    else ctx.log.error({ rpc, err }, "backup call failed");
  };

  function unary<Req, Res>(rpc: string, run: (agent: AgentIdentity, req: Req) => Promise<Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      authorize(identity, call)
        .then((agent) => run(agent, call.request))
        .then(
          (res) => callback(null, res),
          (err: unknown) => {
            logFailure(rpc, err);
            callback(toServiceError(err));
          },
        );
    };
  }

  return {
    beginSession: unary("BeginSession", (agent, req) => beginSession(ctx, agent, req)),
    queryMissing: unary("QueryMissing", (agent, req) => queryMissing(ctx, agent, req)),
    abort: unary("Abort", (agent, req) => abortSession(ctx, agent, req)),
    uploadChunks: (call) => void uploadChunks(ctx, identity, call, logFailure),
    commit: (call, callback) => void commit(ctx, identity, call, callback, logFailure),
  };
}

/**
 * Reads one message at a time: the stream is paused while a batch is verified and stored, and
 * while the ack waits for the agent to read (HTTP/2 flow control then holds the agent back).
 */
async function uploadChunks(
  ctx: IngestContext,
  identity: AgentIdentityResolver,
  call: ServerDuplexStream<UploadChunksRequest, unknown>,
  logFailure: (rpc: string, err: unknown) => void,
): Promise<void> {
  let gone = false;
  call.on("cancelled", () => {
    gone = true;
  });
  /** Set once the stream has ended with an error: nothing more is read, acked or sent. */
  let failed = false;
  const fail = (err: unknown) => {
    if (gone || failed) return;
    failed = true;
    logFailure("UploadChunks", err);
    failStream(call, err);
  };
  try {
    const agent = await authorize(identity, call);
    const stream = openUploadStream(ctx, agent);
    // Batches in order, acks in order; UPLOAD_PIPELINE_DEPTH of them in progress so that one
    // batch's hashing overlaps another's writes. Each batch is acked as soon as it and those
    // before it are stored, never held until a next batch arrives: an agent waits for its acks
    // with the stream open. Likewise a failed batch ends the stream as soon as the acks before it
    // are out, not when a next message arrives. Reading stops only while the pipeline is full.
    let acked: Promise<void> = Promise.resolve();
    const pending: Promise<void>[] = [];
    for await (const req of messages<UploadChunksRequest>(call)) {
      if (failed) return;
      checkBatchLimits(req); // before any work for it, the identity lookup included
      await identity.resolve(call); // revocation takes effect on the next batch
      const work = stream.batch(req);
      work.catch(() => undefined); // it may fail while earlier acks are pending; observed in order
      acked = acked.then(async () => {
        const ack = await work;
        if (gone || failed) return;
        if (!call.write(ack)) await Promise.race([once(call, "drain"), once(call, "cancelled")]);
      });
      const thisAck = acked;
      thisAck.catch(fail);
      pending.push(thisAck);
      if (pending.length >= UPLOAD_PIPELINE_DEPTH) await pending.shift();
      if (gone || failed) return;
    }
    await acked;
    if (!gone && !failed) call.end();
  } catch (err) {
    fail(err);
  }
}

async function commit(
  ctx: IngestContext,
  identity: AgentIdentityResolver,
  call: ServerReadableStream<CommitRequest, CommitResponse>,
  callback: sendUnaryData<CommitResponse>,
  logFailure: (rpc: string, err: unknown) => void,
): Promise<void> {
  let stream: CommitStream | undefined;
  let cut = false;
  call.on("cancelled", () => {
    cut = true;
  });
  try {
    const agent = await authorize(identity, call);
    stream = new CommitStream(ctx, agent);
    for await (const req of messages<CommitRequest>(call)) await stream.message(req);
    if (cut) throw new BulwarkError("BULWARK_PROTO_TRANSPORT_FAILED", "the commit stream was cut");
    const response = await stream.end();
    stream.release();
    callback(null, response);
  } catch (err) {
    await stream?.fail();
    if (cut) return;
    logFailure("Commit", err);
    callback(toServiceError(err));
  }
}
