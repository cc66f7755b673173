import { createHmac, randomBytes, randomUUID, X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { isBulwarkError } from "@bulwark/errors";
import {
  AGENT_CHANNEL_OPTIONS,
  BackupServiceClient,
  type BeginSessionRequest,
  type BeginSessionResponse,
  ChunkEncoding,
  type ChunkIdScheme,
  type CommitRequest,
  type CommitResponse,
  fromServiceError,
  IndexDigest,
  type IndexRun,
  protocolMetadata,
  type QueryMissingResponse,
  type UploadChunksRequest,
  type UploadChunksResponse,
} from "@bulwark/protocol";
import type { KeySecret } from "@bulwark/repository";
import { credentials, type ServiceError } from "@grpc/grpc-js";
import pino from "pino";
import { compress } from "zstd-napi";
import { CatalogIdentityResolver, certificateFingerprint } from "../../src/grpc/identity.js";
import { type AgentListener, startAgentListener } from "../../src/grpc/server.js";
import { agentListenerCredentials } from "../../src/grpc/tls.js";
import { initRepository, RepositoryRegistry } from "../../src/repositories/registry.js";
import { issue, type KeyPair, makeCa } from "./pki.js";

// Everything the ingest tests need, all real: a migrated Postgres database, a repository in a
// temporary directory, openssl-made certificates, the agent listener on a loopback port, and
// grpc-js clients built from @bulwark/protocol's generated BackupServiceClient.

export const CHUNK = 64 * 1024;

export interface TestAgent {
  id: string;
  jobId: string;
  tls: KeyPair;
}

export class Harness {
  db!: TestDatabase;
  dir!: string;
  repoDir!: string;
  secret: KeySecret = { keyFile: randomBytes(32) };
  ca!: KeyPair & { name: string };
  server!: KeyPair;
  tenantId!: string;
  caRowId!: string;
  repositoryId!: string;
  listener: AgentListener | undefined;
  registry: RepositoryRegistry | undefined;
  now = () => new Date();

  async setUp(label: string): Promise<void> {
    this.db = await createTestDatabase(label);
    this.dir = mkdtempSync(join(tmpdir(), "bulwark-ingest-"));
    this.repoDir = join(this.dir, "repo");
    this.ca = makeCa(this.dir, "agent-ca");
    this.server = issue(this.dir, this.ca, "bulwark-server", "server");
    const tenant = await this.db.catalog.tenant.create({ data: { slug: "default", name: "Default" } });
    this.tenantId = tenant.id;
    const caRow = await this.db.catalog.certificateAuthority.create({
      data: {
        certPem: this.ca.cert.toString(),
        encryptedPrivateKey: new Uint8Array(1),
        notAfter: new Date(Date.now() + 86_400_000),
      },
    });
    this.caRowId = caRow.id;
    const repo = await initRepository({
      catalog: this.db.catalog,
      secret: this.secret,
      tenantSlug: "default",
      name: "main",
      location: this.repoDir,
    });
    this.repositoryId = repo.id;
  }

  async start(): Promise<AgentListener> {
    this.registry = new RepositoryRegistry({ catalog: this.db.catalog, secret: this.secret, threads: 2 });
    this.listener = await startAgentListener({
      catalog: this.db.catalog,
      repositories: this.registry,
      identity: new CatalogIdentityResolver(this.db.catalog),
      credentials: agentListenerCredentials({
        certChain: this.server.cert,
        privateKey: this.server.key,
        agentCa: this.ca.cert,
      }),
      host: "127.0.0.1",
      port: 0,
      idleTimeoutSeconds: 3600,
      sweepIntervalSeconds: 3600,
      log: pino({ level: "silent" }),
      now: () => this.now(),
    });
    return this.listener;
  }

  /** Stops the listener and closes the repositories, as a process exit would. */
  async stop(): Promise<void> {
    await this.listener?.close();
    await this.registry?.close();
    this.listener = undefined;
  }

  async tearDown(): Promise<void> {
    await this.stop();
    await this.db?.drop();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** An enrolled agent: catalog rows, a certificate from the agent CA, a running backup job. */
  async agent(opts: { ca?: KeyPair & { name: string }; register?: boolean } = {}): Promise<TestAgent> {
    const id = randomUUID();
    const tls = issue(this.dir, opts.ca ?? this.ca, id, "client");
    if (opts.register !== false) {
      await this.db.catalog.agent.create({
        data: {
          id,
          tenantId: this.tenantId,
          machineId: id,
          hostname: `host-${id.slice(0, 8)}`,
          os: "linux",
          agentVersion: "0.1.0",
        },
      });
      const x509 = new X509Certificate(tls.cert);
      await this.db.catalog.agentCertificate.create({
        data: {
          serial: x509.serialNumber,
          agentId: id,
          caId: this.caRowId,
          fingerprint: certificateFingerprint(x509.raw),
          notAfter: new Date(x509.validTo),
        },
      });
    }
    return { id, tls, jobId: opts.register === false ? randomUUID() : await this.job(id) };
  }

  async job(agentId: string): Promise<string> {
    const job = await this.db.catalog.job.create({
      data: {
        tenantId: this.tenantId,
        kind: "BACKUP",
        state: "RUNNING",
        idempotencyKey: randomUUID(),
        agentId,
        params: {},
      },
    });
    return job.id;
  }

  /** The agent's CA, certificate and key as files in `dir` (created), as a daemon or CLI reads them. */
  writeAgentTls(dir: string, agent: { tls: KeyPair }): { caPath: string; certPath: string; keyPath: string } {
    mkdirSync(dir, { recursive: true });
    const files = {
      caPath: join(dir, "ca.pem"),
      certPath: join(dir, "cert.pem"),
      keyPath: join(dir, "key.pem"),
    };
    writeFileSync(files.caPath, this.ca.cert);
    writeFileSync(files.certPath, agent.tls.cert);
    writeFileSync(files.keyPath, agent.tls.key, { mode: 0o600 });
    return files;
  }

  credentialsFor(agent: { tls: KeyPair } | null) {
    return agent
      ? credentials.createSsl(this.ca.cert, agent.tls.key, agent.tls.cert)
      : credentials.createSsl(this.ca.cert);
  }

  /** The agent's channel options; the server certificate names localhost (SNI carries no IP). */
  channelOptions(): Record<string, string | number> {
    return {
      ...AGENT_CHANNEL_OPTIONS,
      "grpc.ssl_target_name_override": "localhost",
      "grpc.default_authority": "localhost",
    };
  }

  client(agent: { tls: KeyPair } | null, opts: Record<string, string | number> = {}): AgentClient {
    return new AgentClient(
      new BackupServiceClient(`127.0.0.1:${this.listener!.port}`, this.credentialsFor(agent), {
        ...this.channelOptions(),
        ...opts,
      }),
    );
  }
}

/** Promise wrappers over the generated client; failures come back as BulwarkErrors. */
export class AgentClient {
  constructor(readonly raw: BackupServiceClient) {}

  close(): void {
    this.raw.close();
  }

  private unary<Req, Res>(
    fn: (
      req: Req,
      md: ReturnType<typeof protocolMetadata>,
      cb: (e: ServiceError | null, r: Res) => void,
    ) => unknown,
    req: Req,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      fn.call(this.raw, req, protocolMetadata(), (err: ServiceError | null, res: Res) =>
        err ? reject(fromServiceError(err)) : resolve(res),
      );
    });
  }

  begin(
    req: Partial<BeginSessionRequest> & { jobId: string; volumeId: string; size: number },
  ): Promise<BeginSessionResponse> {
    const { size, ...rest } = req;
    return this.unary(this.raw.beginSession, {
      previousRestorePointId: "",
      previousIndexDigest: Buffer.alloc(0),
      resumeToken: Buffer.alloc(0),
      geometry: { sizeBytes: size, chunkSize: CHUNK, logicalSectorSize: 512 },
      ...rest,
    } as BeginSessionRequest);
  }

  query(sessionId: string, ids: Buffer[]): Promise<QueryMissingResponse> {
    return this.unary(this.raw.queryMissing, { sessionId, ids });
  }

  abort(sessionId: string): Promise<unknown> {
    return this.unary(this.raw.abort, { sessionId, reason: "test" });
  }

  /** Sends batches on one stream and collects the acks. */
  upload(batches: UploadChunksRequest[]): Promise<UploadChunksResponse[]> {
    return new Promise((resolve, reject) => {
      const call = this.raw.uploadChunks(protocolMetadata());
      const acks: UploadChunksResponse[] = [];
      call.on("data", (ack: UploadChunksResponse) => acks.push(ack));
      call.on("error", (err: ServiceError) => reject(fromServiceError(err)));
      call.on("end", () => resolve(acks));
      for (const b of batches) call.write(b);
      call.end();
    });
  }

  commit(messages: CommitRequest[]): Promise<CommitResponse> {
    return new Promise((resolve, reject) => {
      const call = this.raw.commit(protocolMetadata(), (err: ServiceError | null, res?: CommitResponse) =>
        err ? reject(fromServiceError(err)) : resolve(res!),
      );
      for (const m of messages) call.write(m);
      call.end();
    });
  }
}

/** A volume image made of chunks: random, repeated, zero, and a short last chunk. */
export class Volume {
  constructor(readonly bytes: Buffer) {}

  static random(chunks: number, opts: { zeroEvery?: number; tail?: number } = {}): Volume {
    const bytes = randomBytes(chunks * CHUNK + (opts.tail ?? 0));
    if (opts.zeroEvery)
      for (let i = 0; i < chunks; i += opts.zeroEvery) bytes.fill(0, i * CHUNK, (i + 1) * CHUNK);
    return new Volume(bytes);
  }

  get size(): number {
    return this.bytes.length;
  }

  get count(): number {
    return Math.ceil(this.size / CHUNK);
  }

  chunk(i: number): Buffer {
    return this.bytes.subarray(i * CHUNK, Math.min(this.size, (i + 1) * CHUNK));
  }

  isZero(i: number): boolean {
    return this.chunk(i).every((b) => b === 0);
  }

  /** Overwrites chunk i with fresh random bytes. */
  change(i: number): void {
    randomBytes(this.chunk(i).length).copy(this.bytes, i * CHUNK);
  }

  ids(scheme: ChunkIdScheme): (Buffer | null)[] {
    return Array.from({ length: this.count }, (_, i) =>
      this.isZero(i) ? null : createHmac("sha256", Buffer.from(scheme.key)).update(this.chunk(i)).digest(),
    );
  }

  /** The index as runs, in parts of at most `partIds` IDs, and its digest. */
  index(
    ids: (Buffer | null)[],
    partIds = 1 << 17,
  ): { parts: { startIndex: number; runs: IndexRun[] }[]; digest: Buffer } {
    const parts: { startIndex: number; runs: IndexRun[] }[] = [];
    let start = 0;
    while (start < ids.length) {
      const runs: IndexRun[] = [];
      let i = start;
      let inPart = 0;
      while (i < ids.length && inPart < partIds) {
        if (ids[i] === null) {
          let j = i;
          while (j < ids.length && ids[j] === null) j++;
          runs.push({ run: { $case: "zero", value: j - i } });
          i = j;
        } else {
          const group: Buffer[] = [];
          while (i < ids.length && ids[i] !== null && inPart < partIds) {
            group.push(ids[i]!);
            i++;
            inPart++;
          }
          runs.push({ run: { $case: "ids", value: Buffer.concat(group) } });
        }
      }
      parts.push({ startIndex: start, runs });
      start = i;
    }
    const digest = new IndexDigest();
    for (const p of parts) digest.update(p.runs);
    return { parts, digest: digest.digest() };
  }
}

/** One chunk as the agent sends it: zstd when it shrinks, raw otherwise. */
export function wireChunk(volume: Volume, i: number, id: Buffer) {
  const plain = volume.chunk(i);
  const packed = compress(plain);
  const zstd = packed.length < plain.length;
  return {
    id,
    offsets: [i * CHUNK],
    encoding: zstd ? ChunkEncoding.CHUNK_ENCODING_ZSTD : ChunkEncoding.CHUNK_ENCODING_RAW,
    plainSize: plain.length,
    payload: zstd ? packed : Buffer.from(plain),
  };
}

export function commitMessages(
  sessionId: string,
  volume: Volume,
  ids: (Buffer | null)[],
  partIds?: number,
): CommitRequest[] {
  const { parts, digest } = volume.index(ids, partIds);
  return [
    { part: { $case: "header", value: { sessionId, totalChunks: volume.count } } },
    ...parts.map((p): CommitRequest => ({ part: { $case: "index", value: p } })),
    { part: { $case: "finish", value: { indexDigest: digest, stats: undefined } } },
  ];
}

/**
 * A whole backup as an agent runs it: query which non-zero chunks are missing, upload those in
 * batches of `perBatch`, commit. Returns what it sent.
 */
export async function backup(
  client: AgentClient,
  agent: TestAgent,
  volumeId: string,
  volume: Volume,
  extra: Partial<BeginSessionRequest> = {},
): Promise<{ begin: BeginSessionResponse; sent: number; commit: CommitResponse; ids: (Buffer | null)[] }> {
  const begin = await client.begin({ jobId: agent.jobId, volumeId, size: volume.size, ...extra });
  const ids = volume.ids(begin.chunkIdScheme!);
  const nonZero = ids.flatMap((id, i) => (id ? [i] : []));
  const { missing } = await client.query(
    begin.sessionId,
    nonZero.map((i) => ids[i]!),
  );
  const toSend = missing.map((m) => nonZero[m]!);
  const perBatch = 16;
  const batches: UploadChunksRequest[] = [];
  for (let b = 0; b < toSend.length; b += perBatch) {
    batches.push({
      sessionId: begin.sessionId,
      batchSeq: batches.length + 1,
      chunks: toSend.slice(b, b + perBatch).map((i) => wireChunk(volume, i, ids[i]!)),
    });
  }
  if (batches.length) await client.upload(batches);
  const commit = await client.commit(commitMessages(begin.sessionId, volume, ids));
  return { begin, sent: toSend.length, commit, ids };
}

/** The Bulwark code of a rejected promise. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isBulwarkError(err)) return err.code;
    throw err;
  }
  throw new Error("expected the call to fail");
}
