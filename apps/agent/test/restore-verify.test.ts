import { createHash, createHmac, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isBulwarkError } from "@bulwark/errors";
import {
  ChunkEncoding,
  DEFAULT_RESTORE_WINDOW_CHUNKS,
  type RestoreRequest,
  type RestoreResponse,
  RestoreServiceService,
} from "@bulwark/protocol";
import { credentials, Server, ServerCredentials, type ServerDuplexStream } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runRestore } from "../src/restore/index.js";

// The agent's side of a restore against test-only servers: one that lies (a chunk whose content
// does not hash to its ID must never reach the target; skipped chunks must be noticed) and one
// that records the order of Wants (a whole-disk restore asks for the partition-table region
// alone first). The real server's path is in test/restore.test.ts.

const CHUNK = 64 * 1024;

describe("a server that lies about a chunk", () => {
  /** How the server lies: wrong content for an ID, or "the target already has everything". */
  let lie: "bad-id" | "skip" = "bad-id";
  /** The restore point's index digest the lying server announces (IDs of non-zero chunks). */
  const digest = createHash("sha256")
    .update(Buffer.concat([randomBytes(32), randomBytes(32), randomBytes(32), randomBytes(32)]))
    .digest();
  let server: Server;
  let port: number;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bulwark-liar-"));
    server = new Server();
    server.addService(RestoreServiceService, {
      restore: (call: ServerDuplexStream<RestoreRequest, RestoreResponse>) => {
        call.on("data", (req: RestoreRequest) => {
          if (req.message?.$case === "start") {
            call.write({
              message: {
                $case: "header",
                value: {
                  restorePointId: randomUUID(),
                  geometry: { sizeBytes: 4 * CHUNK, chunkSize: CHUNK, logicalSectorSize: 512 },
                  chunkIdScheme: { algorithm: 1, key: randomBytes(32) },
                  totalChunks: 4,
                  indexDigest: digest,
                  windowChunks: DEFAULT_RESTORE_WINDOW_CHUNKS,
                  sourceVolumeKey: "",
                  sourceDevicePath: "",
                  sourceAgent: false,
                },
              },
            });
          } else if (req.message?.$case === "want") {
            const { startIndex, count } = req.message.value;
            if (lie === "skip") {
              call.write({
                message: {
                  $case: "rangeDone",
                  value: { startIndex, count, chunksSent: 0, chunksUnchanged: count },
                },
              });
              return;
            }
            // Content that does not hash to the ID it claims.
            call.write({
              message: {
                $case: "chunks",
                value: {
                  chunks: [
                    {
                      indexes: [startIndex],
                      id: randomBytes(32),
                      encoding: ChunkEncoding.CHUNK_ENCODING_RAW,
                      plainSize: CHUNK,
                      payload: randomBytes(CHUNK),
                    },
                  ],
                },
              },
            });
            call.write({
              message: {
                $case: "rangeDone",
                value: { startIndex, count, chunksSent: 1, chunksUnchanged: 0 },
              },
            });
          }
        });
      },
    });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
  });

  afterAll(() => {
    server?.forceShutdown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the agent refuses to write a chunk whose content does not match its ID", async () => {
    const target = join(dir, "target.img");
    writeFileSync(target, Buffer.alloc(4 * CHUNK));
    let error: unknown;
    try {
      await runRestore({
        serverUrl: `127.0.0.1:${port}`,
        credentials: credentials.createInsecure(),
        jobId: randomUUID(),
        targetPath: target,
        mode: "full",
        allowForeignTarget: true,
        wholeDisk: false,
        threads: 1,
      });
    } catch (err) {
      error = err;
    }
    expect(isBulwarkError(error) && error.code).toBe("BULWARK_RESTORE_CHUNK_INVALID");
    expect(readFileSync(target).every((b) => b === 0)).toBe(true);
    expect(statSync(target).size).toBe(4 * CHUNK);
  });

  async function run(mode: "full" | "delta"): Promise<{ code: unknown; target: string }> {
    const target = join(dir, `target-${randomUUID()}.img`);
    writeFileSync(target, Buffer.alloc(4 * CHUNK));
    try {
      await runRestore({
        serverUrl: `127.0.0.1:${port}`,
        credentials: credentials.createInsecure(),
        jobId: randomUUID(),
        targetPath: target,
        mode,
        allowForeignTarget: true,
        wholeDisk: false,
        threads: 1,
      });
    } catch (err) {
      return { code: isBulwarkError(err) ? err.code : err, target };
    }
    return { code: undefined, target };
  }

  it("a server claiming the target already holds everything: delta fails the index check, full the range check", async () => {
    lie = "skip";
    try {
      expect((await run("delta")).code).toBe("BULWARK_RESTORE_VERIFY_FAILED");
      expect((await run("full")).code).toBe("BULWARK_RESTORE_CHUNK_INVALID");
    } finally {
      lie = "bad-id";
    }
  });
});

describe("whole-disk order against a recording server", () => {
  /** 40 chunks of random content (2.5 MiB), served honestly; the server records what it sees. */
  const key = randomBytes(32);
  const volume = randomBytes(40 * CHUNK);
  const idOf = (i: number) =>
    createHmac("sha256", key)
      .update(volume.subarray(i * CHUNK, (i + 1) * CHUNK))
      .digest();
  const ids = Array.from({ length: 40 }, (_, i) => idOf(i));
  const events: string[] = [];
  let server: Server;
  let port: number;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bulwark-order-"));
    server = new Server();
    server.addService(RestoreServiceService, {
      restore: (call: ServerDuplexStream<RestoreRequest, RestoreResponse>) => {
        call.on("data", (req: RestoreRequest) => {
          if (req.message?.$case === "start") {
            call.write({
              message: {
                $case: "header",
                value: {
                  restorePointId: randomUUID(),
                  geometry: { sizeBytes: volume.length, chunkSize: CHUNK, logicalSectorSize: 512 },
                  chunkIdScheme: { algorithm: 1, key },
                  totalChunks: 40,
                  indexDigest: createHash("sha256").update(Buffer.concat(ids)).digest(),
                  windowChunks: DEFAULT_RESTORE_WINDOW_CHUNKS,
                  sourceVolumeKey: "",
                  sourceDevicePath: "",
                  sourceAgent: false,
                },
              },
            });
          } else if (req.message?.$case === "want") {
            const { startIndex, count } = req.message.value;
            events.push(`want ${startIndex}+${count}`);
            const chunks = Array.from({ length: count }, (_, k) => ({
              indexes: [startIndex + k],
              id: ids[startIndex + k]!,
              encoding: ChunkEncoding.CHUNK_ENCODING_RAW,
              plainSize: CHUNK,
              payload: volume.subarray((startIndex + k) * CHUNK, (startIndex + k + 1) * CHUNK),
            }));
            call.write({ message: { $case: "chunks", value: { chunks } } });
            // The partition-table range is answered late: nothing else may be asked meanwhile.
            setTimeout(
              () => {
                events.push(`done ${startIndex}+${count}`);
                call.write({
                  message: {
                    $case: "rangeDone",
                    value: { startIndex, count, chunksSent: count, chunksUnchanged: 0 },
                  },
                });
              },
              startIndex === 0 ? 300 : 0,
            );
          }
        });
        call.on("end", () => {
          events.push("half-close");
          call.write({ message: { $case: "finished", value: { stats: undefined } } });
          call.end();
        });
      },
    });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
  });

  afterAll(() => {
    server?.forceShutdown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("writes and syncs the partition-table region before asking for the partitions", async () => {
    const target = join(dir, "disk.img");
    writeFileSync(target, Buffer.alloc(volume.length));
    const report = await runRestore({
      serverUrl: `127.0.0.1:${port}`,
      credentials: credentials.createInsecure(),
      jobId: randomUUID(),
      targetPath: target,
      mode: "full",
      allowForeignTarget: true,
      wholeDisk: true,
      threads: 1,
    });
    // 1 MiB of 64 KiB chunks = 16: asked alone, and only when it was done the rest follows.
    expect(events[0]).toBe("want 0+16");
    expect(events[1]).toBe("done 0+16");
    expect(events.slice(2).filter((e) => e.startsWith("want")).length).toBeGreaterThan(0);
    expect(events.at(-1)).toBe("half-close");
    expect(readFileSync(target).equals(volume)).toBe(true);
    expect(report.indexVerified).toBe(true);
    expect(report.gpt).toEqual({ status: "already-at-end" });
  });
});
