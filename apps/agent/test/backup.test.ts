import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ChangeDetectionMethod } from "@bulwark/protocol";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type BackupOptions, runBackup } from "../src/backup.js";
import { ReleaseRegistry } from "../src/snapshot/release-registry.js";
import { GROUP_BYTES } from "../src/upload/pipeline.js";
import type { LimiterClock } from "../src/upload/token-bucket.js";
import { BackupPeer } from "./helpers/backup-peer.js";
import { MiB, sh, tempDir } from "./helpers/system.js";
import { TcpProxy } from "./helpers/tcp-proxy.js";
import { makeTestPki, type TestPki } from "./helpers/tls.js";

const CHUNK = 64 * 1024;

/** A real ext4 image with real files (mke2fs -d: no mount, no root), some text and some noise. */
function makeExt4Image(dir: string, sizeMiB: number, files: Record<string, Buffer>): string {
  const content = join(dir, "content");
  rmSync(content, { recursive: true, force: true });
  mkdirSync(content);
  for (const [name, data] of Object.entries(files)) writeFileSync(join(content, name), data);
  const image = join(dir, "disk.img");
  rmSync(image, { force: true });
  sh("mke2fs", [
    "-q",
    "-F",
    "-t",
    "ext4",
    "-b",
    "4096",
    "-E",
    "root_owner=0:0",
    "-d",
    content,
    image,
    `${sizeMiB}M`,
  ]);
  return image;
}

/** Writes a file into the image through debugfs (the real ext4 code in e2fsprogs), no mount needed. */
function debugfsWrite(image: string, dir: string, name: string, data: Buffer): void {
  const local = join(dir, `new-${name}`);
  writeFileSync(local, data);
  sh("debugfs", ["-w", "-R", `write ${local} ${name}`, image]);
}

function textData(bytes: number, seed: string): Buffer {
  const line = Buffer.from(`${seed}: the quick brown fox jumps over the lazy dog 0123456789\n`);
  const out = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += line.length) line.copy(out, at);
  return out;
}

describe("runBackup against a strict BackupService peer over mTLS", () => {
  let dir: { path: string; cleanup(): void };
  let pki: TestPki;
  let peer: BackupPeer;
  const releases = new ReleaseRegistry();

  beforeAll(() => {
    dir = tempDir("bulwark-backup-");
    pki = makeTestPki(dir.path);
  });
  afterAll(() => dir.cleanup());
  afterEach(() => peer?.stop());

  function options(image: string, extra: Partial<BackupOptions> = {}): BackupOptions {
    return {
      source: { kind: "file", path: image },
      serverUrl: `https://127.0.0.1:${peer.port}`,
      tls: { caPath: pki.caPath, certPath: pki.clientCertPath, keyPath: pki.clientKeyPath },
      volumeKey: "test-volume",
      stateDir: join(dir.path, "state"),
      chunkSize: CHUNK,
      releases,
      threads: 2,
      ...extra,
    };
  }

  it("full then incremental: only changed chunks are sent, the cache is reused, restores byte for byte", async () => {
    rmSync(join(dir.path, "state"), { recursive: true, force: true });
    peer = new BackupPeer(pki);
    await peer.start();
    const image = makeExt4Image(dir.path, 64, {
      "text.txt": textData(6 * MiB, "a"),
      "noise.bin": randomBytes(3 * MiB),
    });
    const progress: number[] = [];
    const full = await runBackup(options(image, { onProgress: (p) => progress.push(p.bytesDone) }));
    expect(full.method).toBe("full-read");
    expect(full.planMethod).toBe("bitmap+hash");
    expect(full.filesystem).toBe("ext4");
    expect(full.provider).toBe("file");
    const c = full.counters;
    expect(c.chunksTotal).toBe((64 * MiB) / CHUNK);
    // Free space is never read (bitmap), and what is read is at most the used part.
    expect(c.bytesRead).toBeLessThan(20 * MiB);
    expect(c.bytesRead).toBeGreaterThanOrEqual(9 * MiB);
    expect(c.chunksSent).toBe(peer.counts.chunksStored);
    // The text compresses; the noise goes raw: bytes sent are well below plain bytes sent.
    expect(c.bytesSent).toBeLessThan(c.bytesSentPlain * 0.6);
    expect(progress.at(-1)).toBe(c.bytesRead);
    expect(peer.image(full.restorePointId, 64 * MiB, CHUNK).equals(readFileSync(image))).toBe(true);
    const stats = peer.commits[0]!.stats as { method: number; bytesRead: number; chunksSent: number };
    expect(stats.method).toBe(ChangeDetectionMethod.CHANGE_DETECTION_METHOD_FULL_READ);
    expect(stats.bytesRead).toBe(c.bytesRead);
    expect(stats.chunksSent).toBe(c.chunksSent);

    debugfsWrite(image, dir.path, "added.bin", randomBytes(256 * 1024));
    const stored = peer.counts.chunksStored;
    const incr = await runBackup(options(image));
    expect(incr.method).toBe("hash-cache");
    expect(incr.cache).toMatch(/validated/);
    const ic = incr.counters;
    // 256 KiB of new data is 4-5 chunks; ext4 metadata (bitmaps, inode table, directory) a few more.
    expect(ic.chunksSent).toBeGreaterThanOrEqual(4);
    expect(ic.chunksSent).toBeLessThanOrEqual(12);
    expect(ic.chunksUnchanged).toBeGreaterThan(c.chunksSent - 12);
    expect(ic.chunksQueried).toBe(ic.chunksSent); // unchanged chunks are not even asked about
    expect(peer.counts.chunksStored - stored).toBe(ic.chunksSent);
    expect(peer.image(incr.restorePointId, 64 * MiB, CHUNK).equals(readFileSync(image))).toBe(true);
  });

  it("a cache the server does not confirm is not trusted: everything is hashed and asked again", async () => {
    rmSync(join(dir.path, "state"), { recursive: true, force: true });
    peer = new BackupPeer(pki);
    await peer.start();
    const image = makeExt4Image(dir.path, 32, { "a.txt": textData(2 * MiB, "b") });
    const first = await runBackup(options(image));
    peer.commits.splice(0); // the server no longer knows that restore point (e.g. pruned)
    const second = await runBackup(options(image));
    expect(second.method).toBe("full-read");
    expect(second.cache).toMatch(/not the committed one/);
    expect(second.counters.chunksUnchanged).toBe(0);
    expect(second.counters.chunksQueried).toBe(first.counters.chunksQueried);
    expect(second.counters.chunksSent).toBe(0); // the repository has them all
  });

  it("resumes the same session after the connection is cut mid-upload, without resending stored chunks", async () => {
    rmSync(join(dir.path, "state"), { recursive: true, force: true });
    peer = new BackupPeer(pki);
    peer.maxBatchBytes = 512 * 1024; // many batches, so the cut lands mid-upload
    await peer.start();
    const proxy = new TcpProxy(peer.port);
    await proxy.start();
    try {
      const image = makeExt4Image(dir.path, 32, { "n.bin": randomBytes(8 * MiB) });
      proxy.cutWhen = (bytes) => bytes > 3 * MiB;
      const reconnects: string[] = [];
      const report = await runBackup(
        options(image, {
          serverUrl: `https://127.0.0.1:${proxy.port}`,
          onReconnect: (_n, e) => reconnects.push(e.message),
        }),
      );
      expect(proxy.cuts).toBe(1);
      expect(report.reconnects).toBe(1);
      expect(reconnects).toHaveLength(1);
      expect(peer.counts.resumed).toBe(1);
      expect(peer.sessions.size).toBe(1);
      expect(peer.counts.chunksAlreadyPresent).toBe(0); // nothing acked was sent again
      expect(peer.counts.chunksStored).toBe(
        new Set(peer.commits[0]!.ids.map((id) => id.toString("hex"))).size - 1,
      );
      expect(peer.image(report.restorePointId, 32 * MiB, CHUNK).equals(readFileSync(image))).toBe(true);
    } finally {
      await proxy.stop();
    }
  });

  it("a failed run leaves its session to resume; a new job aborts it first and reuses its chunks", async () => {
    rmSync(join(dir.path, "state"), { recursive: true, force: true });
    peer = new BackupPeer(pki);
    peer.maxBatchBytes = 512 * 1024;
    await peer.start();
    const image = makeExt4Image(dir.path, 32, { "n.bin": randomBytes(6 * MiB) });
    // The server goes away for good mid-upload: the run gives up after its reconnect budget.
    peer.hooks.beforeBatch = (seq) => {
      if (seq === 4) peer.stop();
      return seq === 4 ? "cut" : "ok";
    };
    const failed = await runBackup(options(image, { jobId: "job-1", reconnectGiveUpMs: 1500 })).catch(
      (e) => e,
    );
    expect(failed.code).toBe("BULWARK_PROTO_TRANSPORT_FAILED");
    expect(peer.commits).toHaveLength(0);
    const stored = peer.counts.chunksStored;
    expect(stored).toBeGreaterThan(0);
    const oldSession = [...peer.sessions.keys()][0]!;
    peer.hooks.beforeBatch = undefined;
    await peer.start(peer.port);
    const report = await runBackup(options(image, { jobId: "job-2" }));
    expect(peer.aborted).toEqual([oldSession]);
    expect(report.resumedSession).toBe(false);
    expect(report.counters.chunksSent + stored).toBe(peer.counts.chunksStored);
    expect(peer.counts.chunksAlreadyPresent).toBe(0);
    expect(peer.image(report.restorePointId, 32 * MiB, CHUNK).equals(readFileSync(image))).toBe(true);
  });

  it("survives a server restart mid-upload (reconnects with backoff on the same port)", async () => {
    rmSync(join(dir.path, "state"), { recursive: true, force: true });
    peer = new BackupPeer(pki);
    peer.maxBatchBytes = 512 * 1024;
    const port = await peer.start();
    const image = makeExt4Image(dir.path, 32, { "n.bin": randomBytes(8 * MiB) });
    peer.hooks.beforeBatch = (seq) => {
      if (seq !== 4) return "ok";
      peer.hooks.beforeBatch = undefined;
      peer.stop();
      setTimeout(() => void peer.start(port), 1500);
      return "cut";
    };
    const report = await runBackup(options(image));
    expect(report.reconnects).toBeGreaterThanOrEqual(1);
    expect(peer.counts.chunksAlreadyPresent).toBe(0);
    expect(peer.image(report.restorePointId, 32 * MiB, CHUNK).equals(readFileSync(image))).toBe(true);
  });

  it("waits out a commit the server is still finishing (SESSION_BUSY) and commits once", async () => {
    rmSync(join(dir.path, "state"), { recursive: true, force: true });
    peer = new BackupPeer(pki);
    await peer.start();
    const image = makeExt4Image(dir.path, 16, { "a.txt": textData(1 * MiB, "c") });
    peer.hooks.commitBusy = 2;
    const report = await runBackup(options(image));
    expect(peer.counts.commitCalls).toBe(3);
    expect(peer.commits).toHaveLength(1);
    expect(peer.image(report.restorePointId, 16 * MiB, CHUNK).equals(readFileSync(image))).toBe(true);
  });

  it("bounds memory: with acks held back, reading stops after the groups in flight", async () => {
    rmSync(join(dir.path, "state"), { recursive: true, force: true });
    peer = new BackupPeer(pki);
    await peer.start();
    // Incompressible: each 4 MiB group of the file travels as exactly one 4 MiB batch.
    const image = makeExt4Image(dir.path, 64, { "n.bin": randomBytes(32 * MiB) });
    peer.hooks.holdAcks = true;
    const groupsInFlight = 3;
    const running = runBackup(options(image, { groupsInFlight }));
    // Groups of mostly-zero filesystem metadata hand their buffers off (their chunks go in small
    // merged batches, at most 4 MiB each); full groups hold theirs until acked.
    const whole = (n: number) => n >= GROUP_BYTES / 2;
    const deadline = Date.now() + 30_000;
    while (peer.batchPayloads.filter(whole).length < groupsInFlight && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 1000)); // time enough to read much more, if it would
    expect(peer.batchPayloads.filter(whole).length).toBe(groupsInFlight);
    // At most two merged sends (awaiting acks) and the merge being filled.
    expect(peer.batchPayloads.filter((n) => !whole(n)).length).toBeLessThanOrEqual(2);
    peer.releaseAcks();
    const report = await running;
    expect(report.counters.bytesRead).toBeGreaterThan(32 * MiB);
    expect(peer.image(report.restorePointId, 64 * MiB, CHUNK).equals(readFileSync(image))).toBe(true);
  });

  it("finishes promptly against a server that acks a stream's batch only on the next one or the half-close", async () => {
    rmSync(join(dir.path, "state"), { recursive: true, force: true });
    peer = new BackupPeer(pki);
    peer.hooks.lazyAcks = true;
    await peer.start();
    const image = makeExt4Image(dir.path, 64, { "n.bin": randomBytes(20 * MiB) });
    const t0 = performance.now();
    const report = await runBackup(options(image));
    expect(report.reconnects).toBe(0); // no ack watchdog (2 min) was needed
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect(peer.image(report.restorePointId, 64 * MiB, CHUNK).equals(readFileSync(image))).toBe(true);
  });

  it("keeps to the bandwidth limit (payload bytes, real clock)", async () => {
    rmSync(join(dir.path, "state"), { recursive: true, force: true });
    peer = new BackupPeer(pki);
    await peer.start();
    const image = makeExt4Image(dir.path, 16, { "n.bin": randomBytes(3 * MiB) });
    const limit = 1 * MiB;
    const t0 = performance.now();
    const report = await runBackup(options(image, { bandwidthLimit: limit }));
    const seconds = (performance.now() - t0) / 1000;
    const sent = report.counters.bytesSent;
    expect(sent).toBeGreaterThan(3 * MiB);
    // The bucket starts full (one second of burst): sent ≤ limit × (t + 1 s), i.e. t ≥ sent/limit − 1.
    expect(seconds).toBeGreaterThanOrEqual(sent / limit - 1 - 0.05);
  });

  it("the limiter's clock is injectable end to end (no real waiting)", async () => {
    rmSync(join(dir.path, "state"), { recursive: true, force: true });
    peer = new BackupPeer(pki);
    await peer.start();
    const image = makeExt4Image(dir.path, 16, { "n.bin": randomBytes(2 * MiB) });
    let t = 0;
    const clock: LimiterClock = {
      now: () => t,
      sleep: async (ms) => {
        t += ms;
      },
    };
    const report = await runBackup(options(image, { bandwidthLimit: 256 * 1024, limiterClock: clock }));
    const sent = report.counters.bytesSent;
    expect(t / 1000).toBeGreaterThanOrEqual(sent / (256 * 1024) - 1 - 0.01);
  });
});
