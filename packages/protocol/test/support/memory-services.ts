import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";
import type {
  Metadata,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  ServiceError,
  sendUnaryData,
} from "@grpc/grpc-js";
import {
  type BackupServiceServer,
  CHUNK_ID_BYTES,
  ChunkEncoding,
  ChunkIdAlgorithm,
  type CommitRequest,
  type CommitResponse,
  type ConnectRequest,
  type ConnectResponse,
  type ControlServiceServer,
  chunkCount,
  chunkLength,
  DisconnectReason,
  type EnrollmentServiceServer,
  failStream,
  type IdentityServiceServer,
  IndexDigest,
  type IndexRun,
  type Inventory,
  indexRunLength,
  isValidChunkSize,
  MAX_INDEX_PART_IDS,
  MAX_OFFSETS_PER_CHUNK,
  MAX_QUERY_IDS,
  MAX_UPLOAD_BATCH_BYTES,
  negotiateProtocol,
  PROTOCOL_VERSION_STRING,
  peerCertificate,
  type RestoreChunk,
  type RestoreRequest,
  type RestoreResponse,
  type RestoreServiceServer,
  toServiceError,
  type UploadChunksRequest,
  type UploadChunksResponse,
  type VolumeGeometry,
} from "../../src/index.js";
import type { TestPki } from "./tls.js";

// A small but honest in-memory implementation of every service, enough to exercise the contract
// end to end: identity from the client certificate, protocol negotiation, chunk ID verification,
// streamed index with digest, delta restore. The real server lives in apps/server.

/** Every call starts here: negotiated version and the agent named by its certificate. */
function authenticate(call: Parameters<typeof peerCertificate>[0] & { metadata: Metadata }): {
  agentId: string;
  minor: number;
} {
  const minor = negotiateProtocol(call.metadata);
  const cert = peerCertificate(call);
  const agentId = cert?.subject?.CN;
  if (typeof agentId !== "string")
    throw new BulwarkError("BULWARK_GENERAL_VALIDATION", "no client certificate");
  return { agentId, minor };
}

function unary<Req, Res>(
  handler: (call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    Promise.resolve()
      .then(() => handler(call))
      .then(
        (response) => callback(null, response),
        (error: unknown) => callback(toServiceError(error)),
      );
  };
}

interface Session {
  id: string;
  agentId: string;
  jobId: string;
  volumeId: string;
  geometry: VolumeGeometry;
  resumeToken: Buffer;
  state: "open" | "committed" | "aborted";
  restorePointId?: string;
  indexDigest?: Buffer;
}

interface RestorePoint {
  id: string;
  geometry: VolumeGeometry;
  /** One entry per chunk: its ID, or null for a zero chunk. */
  entries: (Buffer | null)[];
  digest: Buffer;
}

export class MemoryBackend {
  readonly idKey = randomBytes(32);
  readonly chunks = new Map<string, Buffer>();
  readonly sessions = new Map<string, Session>();
  readonly restorePoints = new Map<string, RestorePoint>();
  /** Jobs the "control plane" issued: jobId → agentId. */
  readonly jobs = new Map<string, { agentId: string; kind: "backup" | "restore"; restorePointId?: string }>();
  readonly inventories = new Map<string, Inventory>();
  readonly seenAgents: string[] = [];

  chunkId(plain: Buffer): Buffer {
    return createHmac("sha256", this.idKey).update(plain).digest();
  }

  private session(agentId: string, sessionId: string): Session {
    const session = this.sessions.get(sessionId);
    // A foreign session is indistinguishable from an unknown one.
    if (!session || session.agentId !== agentId) {
      throw new BulwarkError("BULWARK_PROTO_SESSION_NOT_FOUND", undefined, { details: { sessionId } });
    }
    if (session.state !== "open") throw new BulwarkError("BULWARK_PROTO_SESSION_CLOSED");
    return session;
  }

  private job(agentId: string, jobId: string, kind: "backup" | "restore") {
    const job = this.jobs.get(jobId);
    if (!job || job.agentId !== agentId || job.kind !== kind) {
      throw new BulwarkError(
        "BULWARK_PROTO_JOB_NOT_ASSIGNED",
        `job ${jobId} is not a ${kind} job of this agent`,
        {
          details: { jobId },
        },
      );
    }
    return job;
  }

  enrollment(pki: TestPki, tokens: Set<string>): EnrollmentServiceServer {
    return {
      getServerCa: unary(() => ({ caCertificatePem: pki.ca.cert.toString("utf8") })),
      enroll: unary((call) => {
        if (!tokens.delete(call.request.token))
          throw new BulwarkError("BULWARK_GENERAL_VALIDATION", "bad token");
        const agentId = randomUUID();
        return { agentId, certificate: this.issue(pki, call.request.csrPem, agentId) };
      }),
    };
  }

  identity(pki: TestPki): IdentityServiceServer {
    return {
      renew: unary((call) => {
        const { agentId } = authenticate(call);
        this.seenAgents.push(agentId);
        return { certificate: this.issue(pki, call.request.csrPem, agentId) };
      }),
    };
  }

  private issue(pki: TestPki, csrPem: string, agentId: string) {
    const now = Date.now();
    return {
      certificatePem: pki.signCsr(csrPem, agentId).toString("utf8"),
      caChainPem: [pki.ca.cert.toString("utf8")],
      notAfter: new Date(now + 86_400_000),
      renewAfter: new Date(now + 57_600_000),
    };
  }

  control(commands: (agentId: string) => ConnectResponse["message"][]): ControlServiceServer {
    return {
      connect: (call: ServerDuplexStream<ConnectRequest, ConnectResponse>) => {
        let agentId: string;
        let seq = 0;
        const send = (message: ConnectResponse["message"]) => call.write({ seq: ++seq, message });
        try {
          agentId = authenticate(call).agentId;
        } catch (error) {
          return failStream(call, error);
        }
        let greeted = false;
        call.on("data", (request: ConnectRequest) => {
          const message = request.message;
          if (!greeted) {
            if (message?.$case !== "hello") {
              send({
                $case: "disconnect",
                value: {
                  reason: DisconnectReason.DISCONNECT_REASON_PROTOCOL_VIOLATION,
                  message: "first message must be hello",
                  reconnectAfterMs: 0,
                  minProtocolVersion: "",
                  maxProtocolVersion: "",
                },
              });
              return failStream(
                call,
                new BulwarkError("BULWARK_PROTO_MALFORMED", "first message must be hello"),
              );
            }
            greeted = true;
            send({
              $case: "hello",
              value: {
                protocolVersion: PROTOCOL_VERSION_STRING,
                negotiatedMinor: 0,
                serverVersion: "0.1.0",
                serverNode: "test",
                heartbeatIntervalMs: 30_000,
                serverTime: new Date(),
                agentId,
              },
            });
            for (const command of commands(agentId)) send(command);
            return;
          }
          if (message?.$case === "inventory") this.inventories.set(agentId, message.value);
          if (message?.$case === "jobResult") {
            send({
              $case: "disconnect",
              value: {
                reason: DisconnectReason.DISCONNECT_REASON_SERVER_SHUTDOWN,
                message: "test over",
                reconnectAfterMs: 1000,
                minProtocolVersion: "",
                maxProtocolVersion: "",
              },
            });
            call.end();
          }
        });
      },
    };
  }

  backup(): BackupServiceServer {
    return {
      beginSession: unary((call) => {
        const { agentId } = authenticate(call);
        const request = call.request;
        this.job(agentId, request.jobId, "backup");
        const geometry = request.geometry;
        if (!geometry || !isValidChunkSize(geometry.chunkSize) || geometry.sizeBytes < 1) {
          throw new BulwarkError("BULWARK_PROTO_GEOMETRY_INVALID");
        }
        const resumed = [...this.sessions.values()].find(
          (s) =>
            request.resumeToken.length > 0 &&
            s.resumeToken.equals(request.resumeToken) &&
            s.agentId === agentId,
        );
        const session: Session = resumed ?? {
          id: randomUUID(),
          agentId,
          jobId: request.jobId,
          volumeId: request.volumeId,
          geometry,
          resumeToken: randomBytes(16),
          state: "open",
        };
        this.sessions.set(session.id, session);
        return {
          sessionId: session.id,
          resumeToken: session.resumeToken,
          resumed: resumed !== undefined,
          chunkIdScheme: { algorithm: ChunkIdAlgorithm.CHUNK_ID_ALGORITHM_HMAC_SHA256, key: this.idKey },
          previousIndexValid: false,
          maxBatchBytes: MAX_UPLOAD_BATCH_BYTES,
          maxQueryIds: MAX_QUERY_IDS,
          maxIndexPartIds: MAX_INDEX_PART_IDS,
          idleTimeoutSeconds: 3600,
        };
      }),

      queryMissing: unary((call) => {
        const { agentId } = authenticate(call);
        this.session(agentId, call.request.sessionId);
        if (call.request.ids.length > MAX_QUERY_IDS) throw new BulwarkError("BULWARK_PROTO_MALFORMED");
        const missing: number[] = [];
        call.request.ids.forEach((id, i) => {
          if (id.length !== CHUNK_ID_BYTES) throw new BulwarkError("BULWARK_PROTO_CHUNK_INVALID");
          if (!this.chunks.has(id.toString("hex"))) missing.push(i);
        });
        return { missing };
      }),

      uploadChunks: (call: ServerDuplexStream<UploadChunksRequest, UploadChunksResponse>) => {
        let agentId: string;
        try {
          agentId = authenticate(call).agentId;
        } catch (error) {
          return failStream(call, error);
        }
        call.on("data", (batch: UploadChunksRequest) => {
          try {
            const session = this.session(agentId, batch.sessionId);
            const { sizeBytes, chunkSize } = session.geometry!;
            // Validate the whole batch before storing any of it: a batch is stored entirely or not acked.
            const accepted = batch.chunks.map((chunk) => {
              if (
                chunk.id.length !== CHUNK_ID_BYTES ||
                chunk.encoding !== ChunkEncoding.CHUNK_ENCODING_RAW ||
                chunk.offsets.length === 0 ||
                chunk.offsets.length > MAX_OFFSETS_PER_CHUNK
              ) {
                throw new BulwarkError("BULWARK_PROTO_CHUNK_INVALID");
              }
              for (const offset of chunk.offsets) {
                if (offset % chunkSize !== 0 || offset >= sizeBytes) {
                  throw new BulwarkError("BULWARK_PROTO_OFFSET_OUT_OF_RANGE", undefined, {
                    details: { offset },
                  });
                }
                if (chunkLength(sizeBytes, chunkSize, offset / chunkSize) !== chunk.payload.length) {
                  throw new BulwarkError(
                    "BULWARK_PROTO_CHUNK_INVALID",
                    "payload length does not fit its offset",
                  );
                }
              }
              if (!this.chunkId(chunk.payload).equals(chunk.id))
                throw new BulwarkError("BULWARK_PROTO_CHUNK_ID_MISMATCH");
              return chunk;
            });
            let stored = 0;
            for (const chunk of accepted) {
              const key = chunk.id.toString("hex");
              if (!this.chunks.has(key)) {
                this.chunks.set(key, Buffer.from(chunk.payload));
                stored++;
              }
            }
            call.write({ batchSeq: batch.batchSeq, stored, alreadyPresent: accepted.length - stored });
          } catch (error) {
            failStream(call, error);
          }
        });
        call.on("end", () => call.end());
      },

      commit: (call: ServerReadableStream<CommitRequest, CommitResponse>, callback) => {
        let agentId: string;
        let session: Session | undefined;
        let total = 0;
        const entries: (Buffer | null)[] = [];
        const digest = new IndexDigest();
        let failed = false;
        const fail = (error: unknown) => {
          if (failed) return;
          failed = true;
          callback(toServiceError(error) as ServiceError);
        };
        try {
          agentId = authenticate(call).agentId;
        } catch (error) {
          return fail(error);
        }
        call.on("data", (request: CommitRequest) => {
          if (failed) return;
          try {
            const part = request.part;
            if (!session) {
              if (part?.$case !== "header") throw new BulwarkError("BULWARK_PROTO_MALFORMED", "header first");
              session = this.session(agentId, part.value.sessionId);
              total = part.value.totalChunks;
              if (total !== chunkCount(session.geometry.sizeBytes, session.geometry.chunkSize)) {
                throw new BulwarkError(
                  "BULWARK_PROTO_INDEX_INVALID",
                  "total_chunks does not match the geometry",
                );
              }
              return;
            }
            if (part?.$case === "index") {
              if (part.value.startIndex !== digest.chunks)
                throw new BulwarkError("BULWARK_PROTO_INDEX_INVALID");
              const covered = part.value.runs.reduce(
                (n: number, run: IndexRun) => n + indexRunLength(run),
                0,
              );
              if (digest.chunks + covered > total)
                throw new BulwarkError("BULWARK_PROTO_OFFSET_OUT_OF_RANGE");
              digest.update(part.value.runs);
              for (const run of part.value.runs) {
                if (run.run?.$case === "ids") {
                  for (let o = 0; o < run.run.value.length; o += CHUNK_ID_BYTES) {
                    entries.push(Buffer.from(run.run.value.subarray(o, o + CHUNK_ID_BYTES)));
                  }
                } else {
                  for (let i = 0; i < indexRunLength(run); i++) entries.push(null);
                }
              }
              return;
            }
            if (part?.$case !== "finish") throw new BulwarkError("BULWARK_PROTO_MALFORMED");
            const finalDigest = digest.digest();
            if (digest.chunks !== total || !finalDigest.equals(part.value.indexDigest)) {
              throw new BulwarkError("BULWARK_PROTO_INDEX_INVALID", "index digest or count mismatch");
            }
            const unknown = entries.filter(
              (id): id is Buffer => id !== null && !this.chunks.has(id.toString("hex")),
            );
            if (unknown.length > 0) {
              throw new BulwarkError(
                "BULWARK_PROTO_UNKNOWN_CHUNKS",
                `${unknown.length} chunks are not in the repository`,
                {
                  details: {
                    count: unknown.length,
                    ids: unknown.slice(0, 16).map((id) => id.toString("hex")),
                  },
                },
              );
            }
            const restorePoint: RestorePoint = {
              id: randomUUID(),
              geometry: session.geometry,
              entries,
              digest: finalDigest,
            };
            this.restorePoints.set(restorePoint.id, restorePoint);
            session.state = "committed";
            session.restorePointId = restorePoint.id;
            callback(null, { restorePointId: restorePoint.id, newBytes: 0 });
          } catch (error) {
            fail(error);
          }
        });
      },

      abort: unary((call) => {
        const { agentId } = authenticate(call);
        this.session(agentId, call.request.sessionId).state = "aborted";
        return {};
      }),
    };
  }

  restore(): RestoreServiceServer {
    return {
      restore: (call: ServerDuplexStream<RestoreRequest, RestoreResponse>) => {
        let agentId: string;
        try {
          agentId = authenticate(call).agentId;
        } catch (error) {
          return failStream(call, error);
        }
        let point: RestorePoint | undefined;
        const send = (message: RestoreResponse["message"]) => call.write({ message });
        const stats = { sent: 0, unchanged: 0, zero: 0, bytes: 0 };
        call.on("data", (request: RestoreRequest) => {
          try {
            const message = request.message;
            if (!point) {
              if (message?.$case !== "start")
                throw new BulwarkError("BULWARK_PROTO_MALFORMED", "start first");
              const job = this.job(agentId, message.value.jobId, "restore");
              point = this.restorePoints.get(job.restorePointId ?? "");
              if (!point) throw new BulwarkError("BULWARK_PROTO_RESTORE_POINT_NOT_FOUND");
              send({
                $case: "header",
                value: {
                  restorePointId: point.id,
                  geometry: point.geometry,
                  chunkIdScheme: {
                    algorithm: ChunkIdAlgorithm.CHUNK_ID_ALGORITHM_HMAC_SHA256,
                    key: this.idKey,
                  },
                  totalChunks: point.entries.length,
                  indexDigest: point.digest,
                  // The in-memory service keeps no volume identity: the agent treats the target as foreign.
                  sourceVolumeKey: "",
                  sourceDevicePath: "",
                  sourceAgent: false,
                  windowChunks: 64,
                },
              });
              return;
            }
            if (message?.$case !== "want") throw new BulwarkError("BULWARK_PROTO_MALFORMED");
            const { startIndex, count, have } = message.value;
            if (startIndex + count > point.entries.length)
              throw new BulwarkError("BULWARK_PROTO_OFFSET_OUT_OF_RANGE");
            // The target's current IDs for this range (delta), null = zero, undefined = unknown (full).
            const haveIds: (Buffer | null | undefined)[] = [];
            for (const run of have) {
              if (run.run?.$case === "ids") {
                for (let o = 0; o < run.run.value.length; o += CHUNK_ID_BYTES) {
                  haveIds.push(run.run.value.subarray(o, o + CHUNK_ID_BYTES));
                }
              } else {
                for (let i = 0; i < indexRunLength(run); i++) haveIds.push(null);
              }
            }
            const chunks: RestoreChunk[] = [];
            let sentHere = 0;
            let unchangedHere = 0;
            for (let i = 0; i < count; i++) {
              const index = startIndex + i;
              const want = point.entries[index]!;
              const current = haveIds[i];
              const same =
                current === undefined ? false : want === null ? current === null : current?.equals(want);
              if (same) {
                unchangedHere++;
                continue;
              }
              if (want === null) {
                send({ $case: "zeros", value: { startIndex: index, count: 1 } });
                stats.zero++;
                continue;
              }
              const payload = this.chunks.get(want.toString("hex"))!;
              chunks.push({
                indexes: [index],
                id: want,
                encoding: ChunkEncoding.CHUNK_ENCODING_RAW,
                plainSize: payload.length,
                payload,
              });
              sentHere++;
              stats.bytes += payload.length;
            }
            if (chunks.length > 0) send({ $case: "chunks", value: { chunks } });
            stats.sent += sentHere;
            stats.unchanged += unchangedHere;
            send({
              $case: "rangeDone",
              value: { startIndex, count, chunksSent: sentHere, chunksUnchanged: unchangedHere },
            });
          } catch (error) {
            failStream(call, error);
          }
        });
        call.on("end", () => {
          if (!point) return call.end();
          send({
            $case: "finished",
            value: {
              stats: {
                volumeBytes: point.geometry.sizeBytes,
                bytesReceived: stats.bytes,
                chunksReceived: stats.sent,
                chunksUnchanged: stats.unchanged,
                chunksZero: stats.zero,
                durationMs: 0,
              },
            },
          });
          call.end();
        });
      },
    };
  }
}
