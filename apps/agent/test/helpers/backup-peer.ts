import { createHash, createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { BulwarkError } from "@bulwark/errors";
import {
  type BackupServiceServer,
  BackupServiceService,
  ChunkEncoding,
  ChunkIdAlgorithm,
  type CommitRequest,
  failStream,
  IndexDigest,
  indexRunLength,
  negotiateProtocol,
  SERVER_OPTIONS,
  toServiceError,
} from "@bulwark/protocol";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { decompress } from "zstd-napi";
import type { TestPki } from "./tls.js";

/**
 * A small, strict BackupService peer for the agent's own tests (the real server has its own
 * suite): real grpc-js over mTLS, and it checks what the real one checks that matters to the agent
 * (chunk IDs recomputed from decompressed payloads, sizes, index digest, every ID present at
 * commit). Faults are injected by the test through `hooks`.
 */
export class BackupPeer {
  readonly idKey = randomBytes(32);
  readonly chunks = new Map<string, Buffer>();
  readonly commits: { restorePointId: string; ids: Buffer[]; stats: unknown; digest: Buffer }[] = [];
  readonly sessions = new Map<
    string,
    { token: string; jobId: string; volumeId: string; chunkSize: number; size: number; committed?: string }
  >();
  readonly aborted: string[] = [];
  /** Payload bytes of every batch received, in order. */
  readonly batchPayloads: number[] = [];
  counts = {
    begin: 0,
    resumed: 0,
    query: 0,
    batches: 0,
    chunksStored: 0,
    chunksAlreadyPresent: 0,
    commitCalls: 0,
  };
  hooks: {
    beforeBatch?: (seq: number) => "ok" | "cut";
    commitBusy?: number;
    holdAcks?: boolean;
    lazyAcks?: boolean;
  } = {};
  private readonly heldAcks: (() => void)[] = [];

  /** Sends the acks held back by `hooks.holdAcks` and stops holding. */
  releaseAcks(): void {
    this.hooks.holdAcks = false;
    for (const send of this.heldAcks.splice(0)) send();
  }
  maxBatchBytes = 4 * 1024 * 1024;
  private server: Server | undefined;
  port = 0;

  constructor(private readonly pki: TestPki) {}

  private readonly impl: BackupServiceServer = {
    beginSession: (call, cb) => {
      try {
        negotiateProtocol(call.metadata);
        const req = call.request;
        this.counts.begin++;
        let id: string | undefined;
        const token = Buffer.from(req.resumeToken).toString("hex");
        if (token) {
          id = [...this.sessions].find(([, s]) => s.token === token)?.[0];
          if (!id) throw new BulwarkError("BULWARK_PROTO_SESSION_NOT_FOUND", "unknown resume token");
          this.counts.resumed++;
        } else {
          id = randomBytes(8).toString("hex");
          this.sessions.set(id, {
            token: randomBytes(16).toString("hex"),
            jobId: req.jobId,
            volumeId: req.volumeId,
            chunkSize: req.geometry!.chunkSize,
            size: req.geometry!.sizeBytes,
          });
        }
        const s = this.sessions.get(id)!;
        const last = this.commits.find((c) => c.restorePointId === req.previousRestorePointId);
        cb(null, {
          sessionId: id,
          resumeToken: Buffer.from(s.token, "hex"),
          resumed: Boolean(token),
          chunkIdScheme: { algorithm: ChunkIdAlgorithm.CHUNK_ID_ALGORITHM_HMAC_SHA256, key: this.idKey },
          previousIndexValid: last?.digest.equals(Buffer.from(req.previousIndexDigest)) === true,
          maxBatchBytes: this.maxBatchBytes,
          maxQueryIds: 8192,
          maxIndexPartIds: 131_072,
          idleTimeoutSeconds: 3600,
        });
      } catch (e) {
        cb(toServiceError(e));
      }
    },
    queryMissing: (call, cb) => {
      this.counts.query++;
      const missing: number[] = [];
      call.request.ids.forEach((id, i) => {
        if (!this.chunks.has(Buffer.from(id).toString("hex"))) missing.push(i);
      });
      cb(null, { missing });
    },
    uploadChunks: (call) => {
      // lazyAcks: ack a batch only when the stream's next batch or its half-close arrives, as a
      // server that pipelines two batches per stream does; an agent must not wait on it forever.
      let lazy: (() => void) | undefined;
      const flushLazy = () => {
        const send = lazy;
        lazy = undefined;
        send?.();
      };
      call.on("data", (req) => {
        flushLazy();
        try {
          const s = this.sessions.get(req.sessionId);
          if (!s) throw new BulwarkError("BULWARK_PROTO_SESSION_NOT_FOUND", "no such session");
          if (this.hooks.beforeBatch?.(this.counts.batches + 1) === "cut") {
            call.destroy(new Error("cut by test"));
            return;
          }
          this.counts.batches++;
          let stored = 0;
          let present = 0;
          let bytes = 0;
          for (const c of req.chunks) {
            bytes += c.payload.length;
            const plain =
              c.encoding === ChunkEncoding.CHUNK_ENCODING_ZSTD
                ? decompress(c.payload)
                : Buffer.from(c.payload);
            if (plain.length !== c.plainSize) throw new BulwarkError("BULWARK_PROTO_CHUNK_INVALID", "size");
            const expectLen = Math.min(s.chunkSize, s.size - Number(c.offsets[0]));
            if (plain.length !== expectLen)
              throw new BulwarkError("BULWARK_PROTO_CHUNK_INVALID", "length at offset");
            const id = createHmac("sha256", this.idKey).update(plain).digest();
            if (!id.equals(Buffer.from(c.id)))
              throw new BulwarkError("BULWARK_PROTO_CHUNK_ID_MISMATCH", "id");
            const key = id.toString("hex");
            if (this.chunks.has(key)) present++;
            else {
              this.chunks.set(key, plain);
              stored++;
            }
          }
          if (bytes > this.maxBatchBytes)
            throw new BulwarkError("BULWARK_PROTO_CHUNK_INVALID", "batch too big");
          this.batchPayloads.push(bytes);
          this.counts.chunksStored += stored;
          this.counts.chunksAlreadyPresent += present;
          const ack = () => call.write({ batchSeq: req.batchSeq, stored, alreadyPresent: present });
          if (this.hooks.holdAcks) this.heldAcks.push(ack);
          else if (this.hooks.lazyAcks) lazy = ack;
          else ack();
        } catch (e) {
          failStream(call, e);
        }
      });
      call.on("end", () => {
        flushLazy();
        call.end();
      });
      call.on("error", () => {});
    },
    commit: (call, cb) => {
      this.counts.commitCalls++;
      const messages: CommitRequest[] = [];
      call.on("data", (m: CommitRequest) => messages.push(m));
      call.on("error", () => {});
      call.on("end", () => {
        try {
          if (this.hooks.commitBusy && this.hooks.commitBusy-- > 0) {
            throw new BulwarkError("BULWARK_PROTO_SESSION_BUSY", "a commit of this session is in progress");
          }
          const header = messages[0]?.part?.$case === "header" ? messages[0].part.value : undefined;
          const finish = messages.at(-1)?.part;
          if (!header || finish?.$case !== "finish")
            throw new BulwarkError("BULWARK_PROTO_MALFORMED", "shape");
          const s = this.sessions.get(header.sessionId);
          if (!s) throw new BulwarkError("BULWARK_PROTO_SESSION_NOT_FOUND", "no session");
          const digest = new IndexDigest();
          const ids: Buffer[] = [];
          let next = 0;
          for (const m of messages.slice(1, -1)) {
            if (m.part?.$case !== "index" || m.part.value.startIndex !== next)
              throw new BulwarkError("BULWARK_PROTO_INDEX_INVALID", "parts");
            digest.update(m.part.value.runs);
            for (const run of m.part.value.runs) {
              const n = indexRunLength(run);
              next += n;
              for (let i = 0; i < n; i++) {
                if (run.run?.$case === "ids") {
                  const id = Buffer.from(run.run.value.subarray(i * 32, i * 32 + 32));
                  if (!this.chunks.has(id.toString("hex")))
                    throw new BulwarkError("BULWARK_PROTO_UNKNOWN_CHUNKS", "unknown");
                  ids.push(id);
                } else ids.push(Buffer.alloc(32));
              }
            }
          }
          if (next !== header.totalChunks) throw new BulwarkError("BULWARK_PROTO_INDEX_INVALID", "count");
          const d = digest.digest();
          if (!d.equals(Buffer.from(finish.value.indexDigest)))
            throw new BulwarkError("BULWARK_PROTO_INDEX_INVALID", "digest");
          if (s.committed) {
            cb(null, { restorePointId: s.committed, newBytes: 0 });
            return;
          }
          const restorePointId = createHash("sha256")
            .update(d)
            .update(header.sessionId)
            .digest("hex")
            .slice(0, 32);
          s.committed = restorePointId;
          this.commits.push({ restorePointId, ids, stats: finish.value.stats, digest: d });
          cb(null, { restorePointId, newBytes: 0 });
        } catch (e) {
          cb(toServiceError(e));
        }
      });
    },
    abort: (call, cb) => {
      this.aborted.push(call.request.sessionId);
      cb(null, {});
    },
  };

  async start(port = 0): Promise<number> {
    const server = new Server(SERVER_OPTIONS);
    server.addService(BackupServiceService, this.impl);
    const creds = ServerCredentials.createSsl(
      readFileSync(this.pki.caPath),
      [
        {
          private_key: readFileSync(this.pki.serverKeyPath),
          cert_chain: readFileSync(this.pki.serverCertPath),
        },
      ],
      true,
    );
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
    return this.port;
  }

  /** Stops at once, cutting every connection (a crashed server); state survives for a restart. */
  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
  }

  /** The plaintext of a committed restore point, rebuilt from stored chunks. */
  image(restorePointId: string, size: number, chunkSize: number): Buffer {
    const c = this.commits.find((x) => x.restorePointId === restorePointId)!;
    const out = Buffer.alloc(size);
    c.ids.forEach((id, i) => {
      if (!id.equals(Buffer.alloc(32))) this.chunks.get(id.toString("hex"))!.copy(out, i * chunkSize);
    });
    return out;
  }
}
