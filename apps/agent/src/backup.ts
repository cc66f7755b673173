import { createHash, randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import {
  CHUNK_ID_BYTES,
  ChangeDetectionMethod,
  type CommitFinish,
  type CommitRequest,
  DEFAULT_UPLOAD_STREAMS,
  IndexDigest,
} from "@bulwark/protocol";
import { DEFAULT_CHUNK_SIZE } from "@bulwark/repository";
import type { ChannelCredentials } from "@grpc/grpc-js";
import type { CommandRunner } from "./command-runner.js";
import { ProcessCommandRunner } from "./command-runner.js";
import type { ChunkRun } from "./plan/chunk-runs.js";
import {
  type IndexCacheReader,
  IndexCacheWriter,
  indexCachePath,
  openIndexCache,
} from "./plan/index-cache.js";
import type { ChangeMethod } from "./plan/read-plan.js";
import { planVolume } from "./plan/volume-plan.js";
import { createProvider, DEFAULT_LVM_COW_SIZE, type ProviderConfig } from "./snapshot/index.js";
import { SnapshotJournal } from "./snapshot/journal.js";
import { processReleases, type ReleaseRegistry } from "./snapshot/release-registry.js";
import { withSnapshot } from "./snapshot/session.js";
import { FileBlockReader } from "./upload/block-reader.js";
import { IndexSpool } from "./upload/index-spool.js";
import {
  DEFAULT_GROUPS_IN_FLIGHT,
  type Progress,
  type UploadCounters,
  uploadVolume,
} from "./upload/pipeline.js";
import { UploadSession } from "./upload/session.js";
import { type LimiterClock, type Throttle, TokenBucket, unlimited } from "./upload/token-bucket.js";
import { BackupConnection, grpcTarget, mtlsCredentials, type TlsFiles } from "./upload/transport.js";
import {
  loadVolumeState,
  repositoryFingerprint,
  saveVolumeState,
  volumeStatePath,
} from "./upload/volume-state.js";
import { ChunkWorkerPool } from "./upload/worker-pool.js";

/** Cache IDs read per step when digesting or scanning it: 4 MiB at a time. */
const CACHE_STEP_IDS = 131_072;

export interface BackupOptions {
  /** What to back up: a block device, an image file, or an LVM volume (classic or thin snapshot). */
  source:
    | { kind: "device"; devicePath: string; freeze?: string }
    | { kind: "file"; path: string }
    | { kind: "lvm"; vg: string; lv: string; cowSize?: string }
    | { kind: "lvm-thin"; vg: string; lv: string };
  serverUrl: string;
  tls: TlsFiles;
  /** Stable name of the volume (inventory Volume.id); keys the local cache and the session. */
  volumeKey: string;
  stateDir: string;
  /** The job this backup belongs to (from the control stream); default: the unfinished one, else new. */
  jobId?: string;
  /** Must equal the repository's chunk size (the server refuses others). */
  chunkSize?: number;
  logicalSectorSize?: number;
  /** Bytes per second of chunk payload; undefined = unlimited. */
  bandwidthLimit?: number;
  limiterClock?: LimiterClock;
  streams?: number;
  threads?: number;
  groupsInFlight?: number;
  reconnectGiveUpMs?: number;
  onProgress?: (p: Progress) => void;
  onReconnect?: (attempt: number, error: Error) => void;
  runner?: CommandRunner;
  releases?: ReleaseRegistry;
}

export interface BackupReport {
  restorePointId: string;
  sessionId: string;
  jobId: string;
  /** True when the session of an earlier, interrupted run was resumed. */
  resumedSession: boolean;
  provider: string;
  consistency: string;
  filesystem: string;
  /** The read plan's method (cbt, bitmap+hash, full+hash) ... */
  planMethod: ChangeMethod;
  /** ... and what was reported to the server (whether a validated cache was compared against). */
  method: "cbt-thin-delta" | "hash-cache" | "full-read";
  /** Why the cache of the previous index was or was not used. */
  cache: string;
  counters: UploadCounters;
  /** Plaintext bytes new to the repository, per the server. */
  newBytes: number;
  reconnects: number;
  durationMs: number;
  warnings: string[];
}

function toProviderConfig(source: BackupOptions["source"]): ProviderConfig {
  switch (source.kind) {
    case "file":
      return { kind: "file", path: source.path };
    case "device":
      return {
        kind: "device",
        devicePath: source.devicePath,
        ...(source.freeze ? { freeze: source.freeze } : {}),
      };
    case "lvm":
      return { kind: "lvm", vg: source.vg, lv: source.lv, cowSize: source.cowSize ?? DEFAULT_LVM_COW_SIZE };
    case "lvm-thin":
      return { kind: "lvm-thin", vg: source.vg, lv: source.lv };
  }
}

/**
 * One backup of one volume: snapshot → plan → begin (or resume) a session → upload → commit →
 * write the local index cache. Only a successful commit creates a restore point; after a failure
 * the open session is remembered so the next run resumes it without resending stored chunks.
 */
export async function runBackup(opts: BackupOptions): Promise<BackupReport> {
  const started = Date.now();
  const runner = opts.runner ?? new ProcessCommandRunner();
  const ctx = {
    runner,
    journal: SnapshotJournal.inDirectory(opts.stateDir),
    releases: opts.releases ?? processReleases,
  };
  const providerConfig = toProviderConfig(opts.source);
  const provider = createProvider(ctx, providerConfig);
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const statePath = volumeStatePath(opts.stateDir, opts.volumeKey);
  const cachePath = indexCachePath(opts.stateDir, opts.volumeKey);
  const credentials = await mtlsCredentials(opts.tls);
  await mkdir(join(opts.stateDir, "spool"), { recursive: true, mode: 0o700 });
  // Live until withSnapshot has run the commit step (after its consistency check), then closed.
  let session: UploadSession | undefined;
  let spool: IndexSpool | undefined;
  // Reported with the hook warnings: what made this backup less efficient than it should have been.
  const warnings: string[] = [];

  try {
    const result = await withSnapshot(ctx, provider, opts.volumeKey, {}, async (snapshot) => {
      const state = await loadVolumeState(statePath, opts.volumeKey);
      const volumeSize = snapshot.size;

      // The previous index, if we have one that looks like ours; the server has the final word.
      let cache: IndexCacheReader | undefined;
      let cacheNote = "no previous backup recorded";
      let cacheUsed = false;
      let previousDigest: Buffer = Buffer.alloc(0);
      if (state.last) {
        const load = await openIndexCache(cachePath, {
          repositoryId: state.last.repositoryId,
          restorePointId: state.last.restorePointId,
          volumeKey: opts.volumeKey,
          chunkSize,
          volumeSize,
        });
        if (load.status === "ok") {
          cache = load.cache;
          previousDigest = await cacheDigest(cache);
        } else cacheNote = `cache ${load.status}: ${load.reason}`;
      }

      const jobId = opts.jobId ?? state.open?.jobId ?? randomUUID();
      const resumeToken =
        state.open && state.open.jobId === jobId ? Buffer.from(state.open.resumeToken, "base64") : undefined;
      if (state.open && state.open.jobId !== jobId) {
        // An interrupted session of an older job would hold the volume (one open session per
        // volume): end it. Its chunks stay in the repository and this session reuses them.
        await abortLeftover(grpcTarget(opts.serverUrl), credentials, state.open.sessionId, jobId);
        state.open = undefined;
      }
      const upload = new UploadSession({
        target: grpcTarget(opts.serverUrl),
        credentials,
        request: {
          jobId,
          volumeId: opts.volumeKey,
          geometry: { sizeBytes: volumeSize, chunkSize, logicalSectorSize: opts.logicalSectorSize ?? 512 },
          previousRestorePointId: cache && state.last ? state.last.restorePointId : "",
          previousIndexDigest: previousDigest,
        },
        ...(resumeToken ? { resumeToken } : {}),
        ...(opts.streams ? { streams: opts.streams } : {}),
        ...(opts.reconnectGiveUpMs ? { giveUpMs: opts.reconnectGiveUpMs } : {}),
        ...(opts.onReconnect ? { onReconnect: opts.onReconnect } : {}),
        onSession: async (s) => {
          state.open = {
            jobId: s.jobId,
            sessionId: s.sessionId,
            resumeToken: s.resumeToken.toString("base64"),
          };
          await saveVolumeState(statePath, state);
        },
      });
      session = upload;
      let pool: ChunkWorkerPool | undefined;
      let reader: FileBlockReader | undefined;
      try {
        const begun = await upload.begin();
        const repositoryId = repositoryFingerprint(upload.idKey);
        if (cache && (!begun.previousIndexValid || state.last?.repositoryId !== repositoryId)) {
          cacheNote = begun.previousIndexValid
            ? "cache is of another repository"
            : "server says the cached index is not the committed one";
          await cache.close();
          cache = undefined;
        } else if (cache) {
          cacheUsed = true;
          cacheNote = `cache of ${state.last?.restorePointId} validated by the server`;
        }

        const changed = cache ? await snapshot.changedRanges() : undefined;
        if (snapshot.changeTrackingLost) warnings.push(snapshot.changeTrackingLost);
        const source = await snapshot.open();
        reader = await FileBlockReader.open(snapshot.devicePath);
        const { plan, filesystem } = await planVolume(source, {
          chunkSize,
          ...(changed && cache
            ? {
                changed: changed.changed,
                // The previous backup's unread chunks; a state file without them (older agent)
                // falls back to every zero chunk of the index, which includes them.
                previousUnused: state.last?.unused
                  ? state.last.unused.map(([first, count]) => ({ first, count }))
                  : await zeroRuns(cache),
              }
            : {}),
        });
        spool = await IndexSpool.create(
          join(
            opts.stateDir,
            "spool",
            `${createHash("sha256").update(opts.volumeKey).digest("hex").slice(0, 32)}.ids`,
          ),
          plan.chunkCount,
        );
        pool = new ChunkWorkerPool(upload.idKey, opts.threads ? { threads: opts.threads } : {});
        const throttle: Throttle = opts.bandwidthLimit
          ? new TokenBucket(opts.bandwidthLimit, opts.limiterClock)
          : unlimited;
        const counters = await uploadVolume({
          source: reader,
          plan,
          session,
          pool,
          spool,
          throttle,
          ...(cache ? { cache } : {}),
          // Two batches per stream in flight (see DEFAULT_GROUPS_IN_FLIGHT), whatever the stream count.
          groupsInFlight:
            opts.groupsInFlight ??
            Math.max(DEFAULT_GROUPS_IN_FLIGHT, 2 * (opts.streams ?? DEFAULT_UPLOAD_STREAMS)),
          ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
        });
        upload.endStreams();
        await cache?.close();
        cache = undefined;
        const method: BackupReport["method"] =
          plan.method === "cbt" ? "cbt-thin-delta" : cacheUsed ? "hash-cache" : "full-read";
        const readySpool = spool;
        const commit = async () => {
          const response = await upload.commit(() =>
            commitMessages(upload.sessionId, readySpool, upload.limits.indexPartIds, {
              method: PROTO_METHOD[method],
              snapshotProvider: snapshot.provider,
              bytesRead: counters.bytesRead,
              bytesHashed: counters.bytesHashed,
              bytesSent: counters.bytesSent,
              bytesSentPlain: counters.bytesSentPlain,
              chunksTotal: counters.chunksTotal,
              chunksZero: counters.chunksZero,
              chunksSkipped: counters.chunksSkipped,
              chunksSent: counters.chunksSent,
              durationMs: Date.now() - started,
            }),
          );
          // The restore point exists; now make it the base of the next backup.
          const writer = await IndexCacheWriter.create(cachePath, {
            repositoryId,
            restorePointId: response.restorePointId,
            volumeKey: opts.volumeKey,
            chunkSize,
            volumeSize,
            chunkCount: plan.chunkCount,
            idLength: CHUNK_ID_BYTES,
          });
          try {
            await readySpool.copyTo(writer);
            await writer.commit();
          } catch (err) {
            await writer.abort();
            throw err;
          }
          await saveVolumeState(statePath, {
            volumeKey: opts.volumeKey,
            last: {
              repositoryId,
              restorePointId: response.restorePointId,
              unused: plan.unused.map((r): [number, number] => [r.first, r.count]),
            },
          });
          committed = response;
        };
        let committed: { restorePointId: string; newBytes: number } | undefined;
        const value = (): Omit<BackupReport, "durationMs" | "warnings"> => ({
          restorePointId: committed!.restorePointId,
          sessionId: upload.sessionId,
          jobId,
          resumedSession: begun.resumed,
          provider: snapshot.provider,
          consistency: snapshot.consistency,
          filesystem,
          planMethod: plan.method,
          method,
          cache: cacheNote,
          counters,
          newBytes: committed!.newBytes,
          reconnects: upload.reconnects,
        });
        return { value, commit };
      } finally {
        await cache?.close();
        await pool?.close();
        // Before the snapshot is released: an open descriptor would keep an LVM snapshot busy.
        await reader?.close();
      }
    });
    return {
      ...result.value(),
      durationMs: Date.now() - started,
      warnings: [...warnings, ...result.warnings],
    };
  } finally {
    await spool?.remove();
    session?.close();
  }
}

const PROTO_METHOD: Record<BackupReport["method"], ChangeDetectionMethod> = {
  "cbt-thin-delta": ChangeDetectionMethod.CHANGE_DETECTION_METHOD_CBT_THIN_DELTA,
  "hash-cache": ChangeDetectionMethod.CHANGE_DETECTION_METHOD_HASH_CACHE,
  "full-read": ChangeDetectionMethod.CHANGE_DETECTION_METHOD_FULL_READ,
};

/** The canonical digest of a cached index: SHA-256 over its IDs in order (zero IDs for zero chunks). */
async function cacheDigest(cache: IndexCacheReader): Promise<Buffer> {
  const hash = createHash("sha256");
  const total = cache.header.chunkCount;
  for (let at = 0; at < total; at += CACHE_STEP_IDS)
    hash.update(await cache.read(at, Math.min(CACHE_STEP_IDS, total - at)));
  return hash.digest();
}

/** Chunks the cached index records as zero/unused (CBT must read those that are in use now). */
async function zeroRuns(cache: IndexCacheReader): Promise<ChunkRun[]> {
  const runs: ChunkRun[] = [];
  const zero = Buffer.alloc(CHUNK_ID_BYTES);
  const total = cache.header.chunkCount;
  for (let at = 0; at < total; at += CACHE_STEP_IDS) {
    const ids = await cache.read(at, Math.min(CACHE_STEP_IDS, total - at));
    for (let i = 0; i < ids.length / CHUNK_ID_BYTES; i++) {
      if (zero.compare(ids, i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES) !== 0) continue;
      const prev = runs[runs.length - 1];
      if (prev && prev.first + prev.count === at + i) prev.count++;
      else runs.push({ first: at + i, count: 1 });
    }
  }
  return runs;
}

/** Header, the index in parts (with the digest computed as they go), finish with digest and stats. */
export async function* commitMessages(
  sessionId: string,
  spool: IndexSpool,
  maxPartIds: number,
  stats: NonNullable<CommitFinish["stats"]>,
): AsyncGenerator<CommitRequest> {
  yield { part: { $case: "header", value: { sessionId, totalChunks: spool.chunkCount } } };
  const digest = new IndexDigest();
  for await (const part of spool.parts(maxPartIds, digest)) yield { part: { $case: "index", value: part } };
  yield { part: { $case: "finish", value: { indexDigest: digest.digest(), stats } } };
}

/** Best effort: a session the server already expired or closed needs no abort. */
async function abortLeftover(
  target: string,
  credentials: ChannelCredentials,
  sessionId: string,
  jobId: string,
): Promise<void> {
  const conn = new BackupConnection(target, credentials);
  try {
    await conn.abort({ sessionId, reason: `superseded by job ${jobId}` }).catch(() => {});
  } finally {
    conn.close();
  }
}
