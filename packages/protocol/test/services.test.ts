import { createHash, randomBytes, randomUUID, X509Certificate } from "node:crypto";
import type { ServerHttp2Session } from "node:http2";
import { BulwarkError, GrpcStatus, isBulwarkError } from "@bulwark/errors";
import {
  type ChannelCredentials,
  credentials,
  Metadata,
  Server,
  ServerCredentials,
  type ServiceError,
} from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AGENT_CHANNEL_OPTIONS,
  BackupServiceClient,
  BackupServiceService,
  BULWARK_CODE_TRAILER,
  bindServer,
  CHUNK_ID_BYTES,
  ChangeDetectionMethod,
  ChunkEncoding,
  type CommitRequest,
  type CommitResponse,
  type ConnectRequest,
  type ConnectResponse,
  ControlServiceClient,
  ControlServiceService,
  chunkCount,
  EnrollmentServiceClient,
  EnrollmentServiceService,
  FLOW_CONTROL_WINDOW_BYTES,
  fromServiceError,
  IdentityServiceClient,
  IdentityServiceService,
  IndexDigest,
  type IndexRun,
  JobOutcome,
  MAX_MESSAGE_BYTES,
  PartitionTableType,
  PROTOCOL_VERSION_STRING,
  protocolMetadata,
  RestoreMode,
  type RestoreResponse,
  RestoreServiceClient,
  RestoreServiceService,
  SERVER_OPTIONS,
  toServiceError,
  type UploadChunksResponse,
} from "../src/index.js";
import { failure, unary } from "./support/calls.js";
import { MemoryBackend } from "./support/memory-services.js";
import { makeTestPki, type TestPki } from "./support/tls.js";

// A real grpc-js server and clients over TLS on loopback, with in-memory implementations of every
// service (test/support/memory-services.ts): each service's happy path, identity from the client
// certificate, size limits and the error trailers through real calls.

const MiB = 1024 * 1024;

let pki: TestPki;
// Created at load: the describe blocks compute chunk IDs with its key while collecting tests.
const backend = new MemoryBackend();
let agentServer: Server;
let enrollServer: Server;
let agentPort: number;
let enrollPort: number;
let agent: { agentId: string; cert: Buffer; key: Buffer };
let agentCreds: ChannelCredentials;
const tokens = new Set<string>();

beforeAll(async () => {
  pki = makeTestPki();
  agent = pki.issueClient();
  agentCreds = credentials.createSsl(pki.ca.cert, agent.key, agent.cert);

  agentServer = new Server(SERVER_OPTIONS);
  agentServer.addService(IdentityServiceService, backend.identity(pki));
  agentServer.addService(BackupServiceService, backend.backup());
  agentServer.addService(RestoreServiceService, backend.restore());
  agentServer.addService(
    ControlServiceService,
    backend.control(() => [
      {
        $case: "command",
        value: {
          commandId: "cmd-1",
          command: {
            $case: "backup",
            value: {
              jobId: "job-from-control",
              target: { $case: "volumeId", value: "vol-root" },
              policy: {
                bandwidthLimitBytesPerSecond: 50 * MiB,
                preHooks: [{ argv: ["/usr/bin/sync"], timeoutSeconds: 30 }],
                postHooks: [],
                snapshotProvider: "lvm-thin",
                freezeFilesystem: false,
                uploadStreams: 4,
              },
              deadline: new Date("2030-01-01T06:00:00Z"),
              attempt: 1,
            },
          },
        },
      },
    ]),
  );
  const serverPair = [{ cert_chain: pki.server.cert, private_key: pki.server.key }];
  // Agent listener: a client certificate signed by our CA is required at the TLS layer.
  agentPort = await bindServer(
    agentServer,
    "127.0.0.1:0",
    ServerCredentials.createSsl(pki.ca.cert, serverPair, true),
  );

  // Enroll listener: server-authenticated TLS only.
  enrollServer = new Server(SERVER_OPTIONS);
  enrollServer.addService(EnrollmentServiceService, backend.enrollment(pki, tokens));
  enrollPort = await bindServer(
    enrollServer,
    "127.0.0.1:0",
    ServerCredentials.createSsl(null, serverPair, false),
  );
});

afterAll(async () => {
  await Promise.all(
    [agentServer, enrollServer].map((s) => new Promise<void>((r) => s?.tryShutdown(() => r()))),
  );
  pki?.cleanup();
});

const target = () => `localhost:${agentPort}`;
const md = () => protocolMetadata();

function backupClient(options: Record<string, unknown> = {}) {
  return new BackupServiceClient(target(), agentCreds, { ...AGENT_CHANNEL_OPTIONS, ...options });
}

function chunkIdOf(plain: Buffer): Buffer {
  return backend.chunkId(plain);
}

describe("enrollment and identity", () => {
  it("pins the CA, enrolls with a token and CSR, then uses the issued certificate over mTLS", async () => {
    // 1. Fetch the CA without verifying the server, accept it only if it matches the pin.
    const pin = new X509Certificate(pki.ca.cert).fingerprint256;
    const unverified = new EnrollmentServiceClient(
      `localhost:${enrollPort}`,
      credentials.createSsl(null, null, null, { rejectUnauthorized: false }),
    );
    const { caCertificatePem } = await unary(unverified.getServerCa.bind(unverified), {}, md());
    unverified.close();
    expect(new X509Certificate(caCertificatePem).fingerprint256).toBe(pin);

    // 2. Enroll over a channel that trusts only the pinned CA.
    const token = randomBytes(24).toString("base64url");
    tokens.add(token);
    const verified = new EnrollmentServiceClient(
      `localhost:${enrollPort}`,
      credentials.createSsl(Buffer.from(caCertificatePem)),
    );
    const csr = pki.makeCsr();
    const facts = {
      hostname: "ws-042",
      os: "linux",
      osVersion: "Debian 12",
      arch: "x64",
      agentVersion: "0.1.0",
      machineId: randomUUID(),
    };
    const enrolled = await unary(verified.enroll.bind(verified), { token, csrPem: csr.csr, facts }, md());
    expect(enrolled.certificate?.notAfter).toBeInstanceOf(Date);
    const issued = new X509Certificate(enrolled.certificate!.certificatePem);
    expect(issued.subject).toBe(`CN=${enrolled.agentId}`);

    // The token is single use.
    const reused = await failure(
      unary(verified.enroll.bind(verified), { token, csrPem: csr.csr, facts }, md()),
    );
    expect(reused.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    verified.close();

    // 3. The issued certificate authenticates on the agent listener; the server sees its CN.
    const identity = new IdentityServiceClient(
      target(),
      credentials.createSsl(pki.ca.cert, csr.key, Buffer.from(enrolled.certificate!.certificatePem)),
    );
    const renewed = await unary(identity.renew.bind(identity), { csrPem: pki.makeCsr().csr }, md());
    identity.close();
    expect(backend.seenAgents).toContain(enrolled.agentId);
    expect(new X509Certificate(renewed.certificate!.certificatePem).subject).toBe(`CN=${enrolled.agentId}`);
  });

  it("refuses a connection without a client certificate on the agent listener", async () => {
    const anonymous = new IdentityServiceClient(target(), credentials.createSsl(pki.ca.cert));
    // The refusal comes as soon as the handshake fails (no wait-for-ready); the deadline only
    // bounds a hang, and must not turn a slow handshake on a loaded machine into DEADLINE_EXCEEDED.
    const error = await failure(
      unary(anonymous.renew.bind(anonymous), { csrPem: "x" }, md(), { deadline: Date.now() + 30_000 }),
    );
    anonymous.close();
    expect(error.code).toBe(GrpcStatus.UNAVAILABLE);
  });
});

describe("control stream", () => {
  it("exchanges hello, inventory, a backup command, its ack and result, then a disconnect", async () => {
    const client = new ControlServiceClient(target(), agentCreds, AGENT_CHANNEL_OPTIONS);
    const stream = client.connect(md());
    const received: ConnectResponse[] = [];
    let seq = 0;
    const send = (message: ConnectRequest["message"]) => stream.write({ seq: ++seq, message });
    const ended = new Promise<void>((resolve, reject) => {
      stream.on("data", (response: ConnectResponse) => {
        received.push(response);
        const message = response.message;
        if (message?.$case === "command" && message.value.command?.$case === "backup") {
          send({
            $case: "commandAck",
            value: { commandId: message.value.commandId, accepted: true, error: undefined },
          });
          send({
            $case: "jobResult",
            value: {
              jobId: message.value.command.value.jobId,
              outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED,
              restorePointId: "rp-1",
              error: undefined,
              startedAt: new Date(),
              finishedAt: new Date(),
              capture: undefined,
              restore: undefined,
              attempt: 0,
            },
          });
        }
      });
      stream.on("end", resolve);
      stream.on("error", reject);
    });
    send({
      $case: "hello",
      value: {
        protocolVersion: PROTOCOL_VERSION_STRING,
        agentVersion: "0.1.0",
        capabilities: ["restore.delta"],
        runningJobs: [],
        hostname: "ws-042",
        agentTime: new Date(),
      },
    });
    send({
      $case: "inventory",
      value: {
        collectedAt: new Date(),
        disks: [
          {
            id: "disk:wwn-1",
            devicePath: "/dev/sda",
            model: "QEMU HARDDISK",
            serial: "QM0001",
            sizeBytes: 1e12,
            logicalSectorSize: 512,
            physicalSectorSize: 4096,
            partitionTable: PartitionTableType.PARTITION_TABLE_TYPE_GPT,
            partitionTableId: "c0ffee",
            partitions: [
              {
                number: 1,
                startBytes: MiB,
                sizeBytes: 1e12 - 2 * MiB,
                type: "0fc63daf-8483-4772-8e79-3d69d8477de4",
                uuid: randomUUID(),
                name: "root",
                volumeId: "vol-root",
              },
            ],
            removable: false,
            rotational: false,
          },
        ],
        volumes: [
          {
            id: "vol-root",
            devicePath: "/dev/sda1",
            sizeBytes: 1e12 - 2 * MiB,
            filesystem: { type: "ext4", uuid: randomUUID(), label: "root", usedBytes: 4e10, blockSize: 4096 },
            mountPoints: ["/"],
            diskId: "disk:wwn-1",
            snapshotProviders: ["device"],
            lvm: undefined,
          },
        ],
      },
    });
    await ended;
    client.close();
    expect(received.map((r) => r.message?.$case)).toEqual(["hello", "command", "disconnect"]);
    const hello = received[0]!.message;
    expect(hello?.$case === "hello" && hello.value.agentId).toBe(agent.agentId);
    expect(received.map((r) => r.seq)).toEqual([1, 2, 3]);
    const inventory = backend.inventories.get(agent.agentId);
    expect(inventory?.disks[0]?.sizeBytes).toBe(1e12);
    expect(inventory?.volumes[0]?.filesystem?.type).toBe("ext4");
  });
});

describe("backup session and restore", () => {
  const chunkSize = 2 * MiB;
  // Four chunks: random, zero, a repeat of the first, and a short last chunk of 1.25 MiB.
  const first = randomBytes(chunkSize);
  const last = randomBytes(1.25 * MiB);
  const volumeSize = 3 * chunkSize + last.length;
  const volume = Buffer.concat([first, Buffer.alloc(chunkSize), first, last]);
  const ids = [chunkIdOf(first), null, chunkIdOf(first), chunkIdOf(last)];
  let restorePointId: string;

  it("begins, queries, uploads 1+ MiB chunks with acks, commits a streamed index, and refuses unknown chunks", async () => {
    const jobId = "job-backup-1";
    backend.jobs.set(jobId, { agentId: agent.agentId, kind: "backup" });
    const client = backupClient();
    const begin = await unary(
      client.beginSession.bind(client),
      {
        jobId,
        volumeId: "vol-root",
        geometry: { sizeBytes: volumeSize, chunkSize, logicalSectorSize: 512 },
        previousRestorePointId: "",
        previousIndexDigest: Buffer.alloc(0),
        resumeToken: Buffer.alloc(0),
      },
      md(),
    );
    expect(begin.chunkIdScheme?.key.length).toBe(32);
    expect(begin.resumed).toBe(false);
    const sessionId = begin.sessionId;

    const nonZero = ids.filter((id): id is Buffer => id !== null);
    const query = await unary(client.queryMissing.bind(client), { sessionId, ids: nonZero }, md());
    expect(query.missing).toEqual([0, 1, 2]); // the repeat is asked for, and reported missing, twice

    // A commit before the upload refers to chunks the repository lacks: refused, session stays open.
    const runs: IndexRun[][] = [
      [{ run: { $case: "ids", value: ids[0]! } }, { run: { $case: "zero", value: 1 } }],
      [{ run: { $case: "ids", value: Buffer.concat([ids[2]!, ids[3]!]) } }],
    ];
    const indexDigest = new IndexDigest().update(runs.flat()).digest();
    const commit = () =>
      new Promise<CommitResponse>((resolve, reject) => {
        const call = client.commit(md(), (error: ServiceError | null, response?: CommitResponse) =>
          error ? reject(error) : resolve(response!),
        );
        const write = (part: CommitRequest["part"]) => call.write({ part });
        write({ $case: "header", value: { sessionId, totalChunks: chunkCount(volumeSize, chunkSize) } });
        write({ $case: "index", value: { startIndex: 0, runs: runs[0]! } });
        write({ $case: "index", value: { startIndex: 2, runs: runs[1]! } });
        write({
          $case: "finish",
          value: {
            indexDigest,
            stats: {
              method: ChangeDetectionMethod.CHANGE_DETECTION_METHOD_FULL_READ,
              snapshotProvider: "device",
              bytesRead: volumeSize - chunkSize,
              bytesHashed: volumeSize - chunkSize,
              bytesSent: chunkSize + last.length,
              bytesSentPlain: chunkSize + last.length,
              chunksTotal: 4,
              chunksZero: 1,
              chunksSkipped: 0,
              chunksSent: 2,
              durationMs: 12,
            },
          },
        });
        call.end();
      });
    const early = await failure(commit());
    expect(early.code).toBe(GrpcStatus.FAILED_PRECONDITION);
    const earlyError = fromServiceError(early);
    expect(earlyError.code).toBe("BULWARK_PROTO_UNKNOWN_CHUNKS");
    expect(earlyError.details).toMatchObject({ count: 3 });

    // Upload: the two distinct chunks (2 MiB + 1.25 MiB) in one batch, each listing its offsets.
    const acks: UploadChunksResponse[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client.uploadChunks(md());
      call.on("data", (ack: UploadChunksResponse) => acks.push(ack));
      call.on("end", resolve);
      call.on("error", reject);
      call.write({
        sessionId,
        batchSeq: 1,
        chunks: [
          {
            id: ids[0]!,
            offsets: [0, 2 * chunkSize],
            encoding: ChunkEncoding.CHUNK_ENCODING_RAW,
            plainSize: chunkSize,
            payload: first,
          },
          {
            id: ids[3]!,
            offsets: [3 * chunkSize],
            encoding: ChunkEncoding.CHUNK_ENCODING_RAW,
            plainSize: last.length,
            payload: last,
          },
        ],
      });
      call.end();
    });
    expect(acks).toEqual([{ batchSeq: 1, stored: 2, alreadyPresent: 0 }]);
    expect(backend.chunks.get(ids[3]!.toString("hex"))?.equals(last)).toBe(true);

    const committed = await commit();
    expect(committed.restorePointId).toMatch(/^[0-9a-f-]{36}$/);
    restorePointId = committed.restorePointId;

    // Only commit created a restore point; the session is now closed.
    const after = await failure(unary(client.abort.bind(client), { sessionId, reason: "late" }, md()));
    expect(fromServiceError(after).code).toBe("BULWARK_PROTO_SESSION_CLOSED");
    client.close();
  });

  it("refuses a chunk whose content does not hash to its ID", async () => {
    const jobId = "job-backup-liar";
    backend.jobs.set(jobId, { agentId: agent.agentId, kind: "backup" });
    const client = backupClient();
    const { sessionId } = await unary(
      client.beginSession.bind(client),
      {
        jobId,
        volumeId: "vol-x",
        geometry: { sizeBytes: 8 * 65536, chunkSize: 65536, logicalSectorSize: 512 },
        previousRestorePointId: "",
        previousIndexDigest: Buffer.alloc(0),
        resumeToken: Buffer.alloc(0),
      },
      md(),
    );
    const payload = randomBytes(65536);
    const error = await failure(
      new Promise<void>((resolve, reject) => {
        const call = client.uploadChunks(md());
        call.on("data", () => undefined);
        call.on("end", resolve);
        call.on("error", reject);
        call.write({
          sessionId,
          batchSeq: 1,
          chunks: [
            {
              id: chunkIdOf(randomBytes(65536)),
              offsets: [0],
              encoding: ChunkEncoding.CHUNK_ENCODING_RAW,
              plainSize: 65536,
              payload,
            },
          ],
        });
        call.end();
      }),
    );
    client.close();
    expect(error.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(fromServiceError(error).code).toBe("BULWARK_PROTO_CHUNK_ID_MISMATCH");
  });

  it("restores the committed volume, full and delta, byte for byte", async () => {
    expect(restorePointId).toBeDefined();
    const jobId = "job-restore-1";
    backend.jobs.set(jobId, { agentId: agent.agentId, kind: "restore", restorePointId });

    async function restore(mode: RestoreMode, targetImage: Buffer) {
      const client = new RestoreServiceClient(target(), agentCreds, AGENT_CHANNEL_OPTIONS);
      const call = client.restore(md());
      const received: RestoreResponse[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on("data", (response: RestoreResponse) => {
          received.push(response);
          const message = response.message;
          if (message?.$case === "header") {
            const total = message.value.totalChunks;
            const have: IndexRun[] = [];
            if (mode === RestoreMode.RESTORE_MODE_DELTA) {
              // Hash the target as the agent would; all-zero chunks are reported as zero runs.
              for (let i = 0; i < total; i++) {
                const piece = targetImage.subarray(i * chunkSize, Math.min((i + 1) * chunkSize, volumeSize));
                have.push(
                  piece.every((b) => b === 0)
                    ? { run: { $case: "zero", value: 1 } }
                    : { run: { $case: "ids", value: chunkIdOf(piece) } },
                );
              }
            }
            call.write({ message: { $case: "want", value: { startIndex: 0, count: total, have } } });
          }
          if (message?.$case === "chunks") {
            for (const chunk of message.value.chunks) {
              expect(chunkIdOf(chunk.payload).equals(chunk.id)).toBe(true); // verify before writing
              for (const index of chunk.indexes) chunk.payload.copy(targetImage, index * chunkSize);
            }
          }
          if (message?.$case === "zeros") {
            const { startIndex, count } = message.value;
            targetImage.fill(
              0,
              startIndex * chunkSize,
              Math.min((startIndex + count) * chunkSize, volumeSize),
            );
          }
          if (message?.$case === "rangeDone") call.end();
        });
        call.on("end", resolve);
        call.on("error", reject);
      });
      call.write({ message: { $case: "start", value: { jobId, mode, resumeFromIndex: 0 } } });
      await done;
      client.close();
      return received;
    }

    const fresh = Buffer.alloc(volumeSize, 0xaa);
    const full = await restore(RestoreMode.RESTORE_MODE_FULL, fresh);
    expect(fresh.equals(volume)).toBe(true);
    const header = full[0]!.message;
    expect(header?.$case === "header" && header.value.indexDigest).toEqual(
      new IndexDigest()
        .update(ids.map((id) => ({ run: id ? { $case: "ids", value: id } : { $case: "zero", value: 1 } })))
        .digest(),
    );

    // Delta: the target already holds the volume except a damaged last chunk.
    const damaged = Buffer.from(volume);
    damaged.fill(0x55, 3 * chunkSize, 3 * chunkSize + 4096);
    const delta = await restore(RestoreMode.RESTORE_MODE_DELTA, damaged);
    expect(damaged.equals(volume)).toBe(true);
    const done = delta.find((r) => r.message?.$case === "rangeDone")?.message;
    expect(done?.$case === "rangeDone" && done.value).toMatchObject({ chunksSent: 1, chunksUnchanged: 3 });
    const finished = delta.at(-1)?.message;
    expect(finished?.$case === "finished" && finished.value.stats?.bytesReceived).toBe(last.length);
  });
});

describe("limits and errors through real calls", () => {
  it("rejects a message over MAX_MESSAGE_BYTES with RESOURCE_EXHAUSTED before the handler runs", async () => {
    const chunksBefore = backend.chunks.size;
    // The client's own send limit is lifted so that the server's limit is what is tested.
    const client = backupClient({ "grpc.max_send_message_length": -1 });
    const oversized = Buffer.alloc(MAX_MESSAGE_BYTES + 1);
    const unaryError = await failure(
      unary(client.queryMissing.bind(client), { sessionId: "s", ids: [oversized] }, md()),
    );
    expect(unaryError.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(fromServiceError(unaryError).code).toBe("BULWARK_PROTO_MESSAGE_TOO_LARGE");

    const streamError = await failure(
      new Promise<void>((resolve, reject) => {
        const call = client.uploadChunks(md());
        call.on("data", () => undefined);
        call.on("end", resolve);
        call.on("error", reject);
        call.write({
          sessionId: "s",
          batchSeq: 1,
          chunks: [
            {
              id: Buffer.alloc(CHUNK_ID_BYTES),
              offsets: [0],
              encoding: ChunkEncoding.CHUNK_ENCODING_RAW,
              plainSize: 1,
              payload: oversized,
            },
          ],
        });
        call.end();
      }),
    );
    client.close();
    expect(streamError.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(backend.chunks.size).toBe(chunksBefore);
  });

  it("accepts a message just under the limit", async () => {
    const client = backupClient();
    // ~7 MiB of IDs: under the limit, so the handler runs and answers for the unknown session.
    const many = Array.from({ length: Math.floor((MAX_MESSAGE_BYTES - 1024 * 1024) / 34) }, () =>
      Buffer.alloc(CHUNK_ID_BYTES),
    );
    const error = await failure(
      unary(client.queryMissing.bind(client), { sessionId: "nope", ids: many }, md()),
    );
    client.close();
    expect(fromServiceError(error).code).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
  });

  it("carries a Bulwark code and details in the trailers and maps them back", async () => {
    const client = backupClient();
    const request = {
      jobId: "job-nobody-issued",
      volumeId: "v",
      geometry: { sizeBytes: 1, chunkSize: 65536, logicalSectorSize: 512 },
      previousRestorePointId: "",
      previousIndexDigest: Buffer.alloc(0),
      resumeToken: Buffer.alloc(0),
    };
    const error = await failure(unary(client.beginSession.bind(client), request, md()));
    expect(error.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(error.metadata.get(BULWARK_CODE_TRAILER)).toEqual(["BULWARK_PROTO_JOB_NOT_ASSIGNED"]);
    const mapped = fromServiceError(error);
    expect(isBulwarkError(mapped, "BULWARK_PROTO_JOB_NOT_ASSIGNED")).toBe(true);
    expect(mapped.message).toBe("job job-nobody-issued is not a backup job of this agent");
    expect(mapped.details).toEqual({ jobId: "job-nobody-issued" });

    // No bulwark-protocol header: refused with the version code.
    const versionless = await failure(unary(client.beginSession.bind(client), request, new Metadata()));
    expect(versionless.code).toBe(GrpcStatus.FAILED_PRECONDITION);
    expect(fromServiceError(versionless).code).toBe("BULWARK_PROTO_VERSION_UNSUPPORTED");
    const otherMajor = await failure(
      unary(client.beginSession.bind(client), request, protocolMetadata("2.0")),
    );
    expect(fromServiceError(otherMajor).details).toMatchObject({ received: "2.0" });
    client.close();
  });

  it("maps errors that carry no Bulwark code by status, and hides non-Bulwark messages", () => {
    const internal = toServiceError(new Error("password=hunter2 at /etc/secret"));
    expect(internal.code).toBe(GrpcStatus.INTERNAL);
    expect(internal.details).not.toContain("hunter2");
    expect(fromServiceError(internal).code).toBe("BULWARK_GENERAL_INTERNAL");

    const bare = (code: number, details: string, metadata = new Metadata()) =>
      Object.assign(new Error(details), { code, details, metadata }) as ServiceError;
    expect(fromServiceError(bare(GrpcStatus.UNAVAILABLE, "No connection established")).code).toBe(
      "BULWARK_PROTO_TRANSPORT_FAILED",
    );
    expect(fromServiceError(bare(GrpcStatus.NOT_FOUND, "no such method")).code).toBe(
      "BULWARK_PROTO_REMOTE_ERROR",
    );
    const newer = new Metadata();
    newer.set(BULWARK_CODE_TRAILER, "BULWARK_FUTURE_THING");
    const fromNewer = fromServiceError(bare(GrpcStatus.ABORTED, "from the future", newer));
    expect(fromNewer.code).toBe("BULWARK_PROTO_REMOTE_ERROR");
    expect(fromNewer.details).toMatchObject({
      remoteCode: "BULWARK_FUTURE_THING",
      grpcStatus: GrpcStatus.ABORTED,
    });

    const big = toServiceError(
      new BulwarkError("BULWARK_PROTO_MALFORMED", "x", { details: { blob: "y".repeat(9000) } }),
    );
    expect(fromServiceError(big).details).toEqual({ truncated: true });
  });

  it("raises the HTTP/2 receive window on the server's sessions", async () => {
    const client = backupClient();
    await failure(unary(client.abort.bind(client), { sessionId: "nope", reason: "" }, md()));
    const internal = (
      agentServer as unknown as { http2Servers: Map<unknown, { sessions: Set<ServerHttp2Session> }> }
    ).http2Servers;
    const sessions = [...internal.values()].flatMap((entry) => [...entry.sessions]);
    expect(sessions.length).toBeGreaterThan(0);
    for (const session of sessions) {
      expect(session.localSettings.initialWindowSize).toBe(FLOW_CONTROL_WINDOW_BYTES);
      expect(session.state.localWindowSize).toBeGreaterThanOrEqual(FLOW_CONTROL_WINDOW_BYTES / 2);
    }
    client.close();
  });
});

describe("index digest", () => {
  it("equals SHA-256 over the IDs with 32 zero bytes per zero chunk, however the runs are split", () => {
    const a = randomBytes(32);
    const b = randomBytes(32);
    const expected = createHash("sha256")
      .update(Buffer.concat([a, Buffer.alloc(32 * 5000), b]))
      .digest();
    const one = new IndexDigest().update([
      { run: { $case: "ids", value: a } },
      { run: { $case: "zero", value: 5000 } },
      { run: { $case: "ids", value: b } },
    ]);
    const split = new IndexDigest()
      .update([{ run: { $case: "ids", value: a } }, { run: { $case: "zero", value: 4999 } }])
      .update([{ run: { $case: "zero", value: 1 } }, { run: { $case: "ids", value: b } }]);
    expect(one.chunks).toBe(5002);
    expect(one.digest()).toEqual(expected);
    expect(split.digest()).toEqual(expected);
    expect(() => new IndexDigest().update([{ run: { $case: "ids", value: Buffer.alloc(31) } }])).toThrow(
      /multiple of 32/,
    );
    expect(() => new IndexDigest().update([{ run: undefined }])).toThrow(/neither/);
  });
});
