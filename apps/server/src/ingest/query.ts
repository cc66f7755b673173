import { BulwarkError } from "@bulwark/errors";
import {
  type AbortRequest,
  type AbortResponse,
  CHUNK_ID_BYTES,
  MAX_QUERY_IDS,
  type QueryMissingRequest,
  type QueryMissingResponse,
} from "@bulwark/protocol";
import type { AgentIdentity } from "../grpc/identity.js";
import { type IngestContext, ownSession, sessionRepository, touchOpenSession } from "./sessions.js";

// QueryMissing and Abort: the two small unary calls of a backup session.

/** Positions of the IDs the repository lacks, answered from the shared chunk index in one query. */
export async function queryMissing(
  ctx: IngestContext,
  agent: AgentIdentity,
  req: QueryMissingRequest,
): Promise<QueryMissingResponse> {
  if (req.ids.length > MAX_QUERY_IDS) {
    throw new BulwarkError("BULWARK_PROTO_MALFORMED", `at most ${MAX_QUERY_IDS} IDs per QueryMissing`, {
      details: { ids: req.ids.length },
    });
  }
  const bad = req.ids.findIndex((id) => id.length !== CHUNK_ID_BYTES);
  if (bad >= 0) {
    throw new BulwarkError(
      "BULWARK_PROTO_CHUNK_INVALID",
      `ID ${bad} is ${req.ids[bad]!.length} bytes, not 32`,
      {
        details: { position: bad },
      },
    );
  }
  const session = await touchOpenSession(ctx, agent, req.sessionId);
  const repository = await sessionRepository(ctx, session);
  const present = await repository.index.has(req.ids.map((id) => Buffer.from(id)));
  const missing: number[] = [];
  present.forEach((has, i) => {
    if (!has) missing.push(i);
  });
  return { missing };
}

/** Ends the session without a restore point; repeating it is harmless. Uploaded chunks stay. */
export async function abortSession(
  ctx: IngestContext,
  agent: AgentIdentity,
  req: AbortRequest,
): Promise<AbortResponse> {
  const session = await ownSession(ctx, agent, req.sessionId);
  if (session.status === "ABORTED") return {};
  if (session.status === "COMMITTED") {
    throw new BulwarkError("BULWARK_PROTO_SESSION_CLOSED", `backup session ${session.id} is committed`, {
      details: { sessionId: session.id, status: session.status },
    });
  }
  if (session.status === "EXPIRED" || session.expiresAt <= ctx.now()) {
    throw new BulwarkError("BULWARK_PROTO_SESSION_NOT_FOUND", `backup session ${session.id} has expired`, {
      details: { sessionId: session.id },
    });
  }
  const done = await ctx.catalog.backupSession.updateMany({
    where: { id: session.id, status: "OPEN" },
    data: { status: "ABORTED", endedAt: ctx.now() },
  });
  if (done.count === 0) return abortSession(ctx, agent, req); // changed meanwhile: answer for its new state
  await ctx.ingests.abort(session.id);
  ctx.log.info(
    { sessionId: session.id, agentId: agent.agentId, reason: req.reason.slice(0, 200) },
    "backup session aborted",
  );
  return {};
}
