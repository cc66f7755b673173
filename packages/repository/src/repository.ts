import { randomBytes } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";
import type { Backend } from "./backend.js";
import { BlobKind, chunkIdOf, decodeBlob, encodeBlob } from "./blob.js";
import { type ChunkIndex, chunkKey, StoreChunkIndex } from "./chunk-index.js";
import { type Clock, systemClock } from "./clock.js";
import { CodecPool } from "./codec-pool.js";
import { DEFAULT_CHUNK_SIZE, DEFAULT_FANOUT } from "./constants.js";
import { type ChunkId, idToHex, isZeroId, RECORD_ID } from "./ids.js";
import { decodeNode, encodeNode, geometry, nodeIdOf } from "./index-tree.js";
import { generateMasterKey, type KeySecret, type MasterKey, unwrapMasterKey, wrapMasterKey } from "./keys.js";
import { decodePlainFile, encodePlainFile } from "./plain-file.js";
import { parsePoint, parseSession, type RestorePoint, type SessionRecord } from "./records.js";
import { RestorePool } from "./restore-pool.js";

/**
 * An open repository: config, keys and the object-level operations every higher module uses
 * (read/write blobs, nodes, records). Every method may be called concurrently; the operations
 * (ingest, reader, verify, gc, prune) live in their own modules and take a Repository.
 */
export const CONFIG_KEY = "config";
export const CONFIG_MAGIC = "bulwark-repo-config";
export const CONFIG_VERSION = 1;

export interface RepositoryConfig {
  repositoryId: string;
  createdAt: string;
  chunkSize: number;
  indexFanout: number;
  idHash: "hmac-sha256";
  cipher: "aes-256-gcm-hmac-subkey";
  compression: "zstd";
}

export interface OpenOptions {
  clock?: Clock;
  /** Codec worker threads (default: one per core). */
  threads?: number;
  /** Chunk index used by ingest (default: the backend itself). */
  chunkIndex?: ChunkIndex;
  /**
   * Restore workers started by the caller before opening (their start-up then overlaps the key
   * derivation); the repository unlocks them and closes them with itself.
   */
  restorePool?: RestorePool;
  /** Codec workers started by the caller before opening (`new CodecPool(null)`), likewise. */
  codecPool?: CodecPool;
}

export interface InitOptions extends OpenOptions {
  chunkSize?: number;
  fanout?: number;
  /** scrypt parameters for the first key (tests use small ones). */
  scrypt?: { N: number; r: number; p: number };
}

export function newRecordId(): string {
  return randomBytes(16).toString("hex");
}

export class Repository {
  readonly chunkIndex: ChunkIndex;
  readonly clock: Clock;
  private codecPool: CodecPool | undefined;
  private restoreWorkers: RestorePool | undefined;

  private constructor(
    readonly backend: Backend,
    readonly config: RepositoryConfig,
    readonly keys: MasterKey,
    private readonly masterBytes: Buffer,
    private readonly opts: OpenOptions,
  ) {
    this.clock = opts.clock ?? systemClock;
    this.chunkIndex = opts.chunkIndex ?? new StoreChunkIndex(backend);
    this.restoreWorkers = opts.restorePool;
    this.restoreWorkers?.unlock(keys);
    this.codecPool = opts.codecPool;
    this.codecPool?.unlock(keys);
  }

  /** Creates a repository in an empty backend and its first key. */
  static async init(backend: Backend, secret: KeySecret, opts: InitOptions = {}): Promise<Repository> {
    if ((await backend.stat(CONFIG_KEY)) !== null) {
      throw new BulwarkError("BULWARK_REPO_ALREADY_EXISTS", "a repository already exists there");
    }
    const clock = opts.clock ?? systemClock;
    const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    const fanout = opts.fanout ?? DEFAULT_FANOUT;
    geometry(0, chunkSize, fanout); // validates both
    const config: RepositoryConfig = {
      repositoryId: newRecordId(),
      createdAt: new Date(clock.now()).toISOString(),
      chunkSize,
      indexFanout: fanout,
      idHash: "hmac-sha256",
      cipher: "aes-256-gcm-hmac-subkey",
      compression: "zstd",
    };
    const master = generateMasterKey();
    const keyId = newRecordId();
    const keyFile = await wrapMasterKey(master.bytes, secret, config.repositoryId, {
      id: keyId,
      now: new Date(clock.now()),
      ...(opts.scrypt ? { scrypt: opts.scrypt } : {}),
    });
    // Key before config: a config without a key would be an unopenable repository.
    await backend.putIfAbsent(`keys/${keyId}`, keyFile);
    if (!(await backend.putIfAbsent(CONFIG_KEY, encodePlainFile(CONFIG_MAGIC, CONFIG_VERSION, config)))) {
      await backend.delete(`keys/${keyId}`);
      throw new BulwarkError("BULWARK_REPO_ALREADY_EXISTS", "a repository already exists there");
    }
    return new Repository(backend, config, master.key, master.bytes, opts);
  }

  static async readConfig(backend: Backend): Promise<RepositoryConfig> {
    let bytes: Buffer;
    try {
      bytes = await backend.get(CONFIG_KEY);
    } catch (err) {
      if (err instanceof BulwarkError && err.code === "BULWARK_REPO_NOT_FOUND") {
        throw new BulwarkError("BULWARK_REPO_NOT_A_REPOSITORY", "no repository there (config missing)");
      }
      throw err;
    }
    const v = decodePlainFile(bytes, CONFIG_MAGIC, CONFIG_VERSION, CONFIG_KEY);
    if (typeof v.repositoryId !== "string" || !RECORD_ID.test(v.repositoryId)) {
      throw new BulwarkError("BULWARK_REPO_CORRUPT", "config: repositoryId invalid");
    }
    if (v.idHash !== "hmac-sha256" || v.cipher !== "aes-256-gcm-hmac-subkey" || v.compression !== "zstd") {
      throw new BulwarkError(
        "BULWARK_REPO_UNSUPPORTED_VERSION",
        "config names an algorithm this version does not know",
      );
    }
    try {
      geometry(0, v.chunkSize as number, v.indexFanout as number);
    } catch {
      throw new BulwarkError("BULWARK_REPO_CORRUPT", "config: chunkSize or indexFanout invalid");
    }
    return v as unknown as RepositoryConfig;
  }

  /** Opens a repository with a passphrase or key file: tries every key file. */
  static async open(backend: Backend, secret: KeySecret, opts: OpenOptions = {}): Promise<Repository> {
    const config = await Repository.readConfig(backend);
    let corrupt: unknown;
    for await (const key of backend.list("keys/")) {
      try {
        const got = await unwrapMasterKey(await backend.get(key), secret, config.repositoryId, key);
        if (got) return new Repository(backend, config, got.key, got.bytes, opts);
      } catch (err) {
        corrupt ??= err; // one damaged key file must not hide a good one
      }
    }
    if (corrupt) throw corrupt;
    throw new BulwarkError(
      "BULWARK_REPO_WRONG_KEY",
      "the passphrase or key file opens no key of this repository",
    );
  }

  /** Adds another passphrase or key file that opens the same master key. */
  async addKey(
    secret: KeySecret,
    opts: { scrypt?: { N: number; r: number; p: number } } = {},
  ): Promise<string> {
    const id = newRecordId();
    const bytes = await wrapMasterKey(this.masterBytes, secret, this.config.repositoryId, {
      id,
      now: new Date(this.clock.now()),
      ...(opts.scrypt ? { scrypt: opts.scrypt } : {}),
    });
    await this.backend.putIfAbsent(`keys/${id}`, bytes);
    return id;
  }

  /** Worker threads for hashing and encryption, started on first use. */
  get pool(): CodecPool {
    this.codecPool ??= new CodecPool(
      this.keys,
      this.opts.threads !== undefined ? { threads: this.opts.threads } : {},
    );
    return this.codecPool;
  }

  /** Worker threads that restore a point into a file from a local backend, started on first use. */
  get restorePool(): RestorePool {
    if (!this.restoreWorkers) {
      this.restoreWorkers = new RestorePool(
        this.opts.threads !== undefined ? { threads: this.opts.threads } : {},
      );
      this.restoreWorkers.unlock(this.keys);
    }
    return this.restoreWorkers;
  }

  async close(): Promise<void> {
    await Promise.all([this.codecPool?.close(), this.restoreWorkers?.close()]);
    this.codecPool = undefined;
    this.restoreWorkers = undefined;
  }

  // ---- chunks and nodes -------------------------------------------------------------------

  /** Reads a data chunk, authenticated and re-hashed; CHUNK_MISSING if absent. */
  async readChunk(id: ChunkId): Promise<Buffer> {
    const blob = await this.getObject(chunkKey(id), "chunk");
    const plain = decodeBlob(BlobKind.Data, id, blob, this.keys.dataKey, chunkKey(id));
    if (!chunkIdOf(this.keys.idKey, plain).equals(id)) {
      throw new BulwarkError("BULWARK_REPO_CORRUPT", `${chunkKey(id)}: content does not match its ID`, {
        details: { object: chunkKey(id), reason: "id mismatch" },
      });
    }
    return plain;
  }

  /** Fetches an object that a point references; absence is CHUNK_MISSING, not NOT_FOUND. */
  async getObject(key: string, what: string): Promise<Buffer> {
    try {
      return await this.backend.get(key);
    } catch (err) {
      if (err instanceof BulwarkError && err.code === "BULWARK_REPO_NOT_FOUND") {
        throw new BulwarkError("BULWARK_REPO_CHUNK_MISSING", `${what} ${key} is missing`, {
          details: { object: key },
        });
      }
      throw err;
    }
  }

  /** Entries of an index node, checked against its position (level, entry count) and ID. */
  async readNode(id: ChunkId, level: number, expectedEntries: number): Promise<Buffer> {
    const key = chunkKey(id);
    const blob = await this.getObject(key, "index node");
    const plain = decodeBlob(BlobKind.IndexNode, id, blob, this.keys.dataKey, key);
    if (!nodeIdOf(this.keys.nodeIdKey, plain).equals(id)) {
      throw new BulwarkError("BULWARK_REPO_CORRUPT", `${key}: index node does not match its ID`, {
        details: { object: key, reason: "id mismatch" },
      });
    }
    return decodeNode(plain, level, expectedEntries, key);
  }

  /**
   * Stores an index node durably (deduplicated); returns its ID. `put` replaces the backend's
   * `putIfAbsent` (an ingest passes its batched writer); it must be durable when it resolves.
   */
  async writeNode(
    level: number,
    entries: Buffer,
    put?: (key: string, blob: Buffer) => Promise<boolean>,
  ): Promise<{ id: Buffer; created: boolean; bytes: number }> {
    const plain = encodeNode(level, entries);
    const id = nodeIdOf(this.keys.nodeIdKey, plain);
    const key = chunkKey(id);
    // An identical node already stored is reused, but touched so a concurrent GC keeps it.
    if (await this.backend.touch(key)) return { id, created: false, bytes: 0 };
    const blob = encodeBlob(BlobKind.IndexNode, id, plain, this.keys.dataKey);
    const created = await (put ? put(key, blob) : this.backend.putIfAbsent(key, blob));
    return { id, created, bytes: created ? blob.length : 0 };
  }

  // ---- records ----------------------------------------------------------------------------

  async writeRecord(kind: BlobKind.RestorePoint | BlobKind.Session, key: string, id: string, value: object) {
    const blob = encodeBlob(
      kind,
      Buffer.from(id, "hex"),
      Buffer.from(JSON.stringify(value), "utf8"),
      this.keys.dataKey,
    );
    if (!(await this.backend.putIfAbsent(key, blob))) {
      throw new BulwarkError("BULWARK_GENERAL_INTERNAL", `record ${key} already exists`);
    }
  }

  async readPoint(id: string): Promise<RestorePoint> {
    if (!RECORD_ID.test(id))
      throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", `not a restore point id: ${id}`);
    const key = `points/${id}`;
    let blob: Buffer;
    try {
      blob = await this.backend.get(key);
    } catch (err) {
      if (err instanceof BulwarkError && err.code === "BULWARK_REPO_NOT_FOUND") {
        throw new BulwarkError("BULWARK_REPO_NOT_FOUND", `restore point ${id} does not exist`, {
          details: { id },
        });
      }
      throw err;
    }
    const plain = decodeBlob(BlobKind.RestorePoint, Buffer.from(id, "hex"), blob, this.keys.dataKey, key);
    return parsePoint(plain, id, key);
  }

  async pointExists(id: string): Promise<boolean> {
    return (await this.backend.stat(`points/${id}`)) !== null;
  }

  /** Every readable restore point (oldest first) and every record that could not be read. */
  async scanPoints(): Promise<{ points: RestorePoint[]; broken: { id: string; error: BulwarkError }[] }> {
    const points: RestorePoint[] = [];
    const broken: { id: string; error: BulwarkError }[] = [];
    for await (const key of this.backend.list("points/")) {
      const id = key.slice("points/".length);
      if (!RECORD_ID.test(id)) continue;
      try {
        points.push(await this.readPoint(id));
      } catch (err) {
        if (err instanceof BulwarkError && err.code === "BULWARK_REPO_NOT_FOUND") continue; // pruned meanwhile
        if (
          err instanceof BulwarkError &&
          (err.code === "BULWARK_REPO_CORRUPT" || err.code === "BULWARK_REPO_UNSUPPORTED_VERSION")
        ) {
          broken.push({ id, error: err });
        } else throw err;
      }
    }
    points.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    return { points, broken };
  }

  async listPoints(): Promise<RestorePoint[]> {
    return (await this.scanPoints()).points;
  }

  /** A point by id, unique id prefix (≥ 4 hex digits) or "latest" (optionally of one name). */
  async resolvePoint(ref: string, opts: { name?: string } = {}): Promise<RestorePoint> {
    if (RECORD_ID.test(ref)) return this.readPoint(ref);
    const points = (await this.listPoints()).filter((p) => opts.name === undefined || p.name === opts.name);
    if (ref === "latest") {
      const last = points.at(-1);
      if (!last) throw new BulwarkError("BULWARK_REPO_NOT_FOUND", "the repository has no restore point");
      return last;
    }
    if (!/^[0-9a-f]{4,31}$/.test(ref)) {
      throw new BulwarkError(
        "BULWARK_REPO_INVALID_ARGUMENT",
        `not a restore point reference: ${JSON.stringify(ref)}`,
      );
    }
    const hits = points.filter((p) => p.id.startsWith(ref));
    if (hits.length === 0)
      throw new BulwarkError("BULWARK_REPO_NOT_FOUND", `no restore point matches ${ref}`);
    if (hits.length > 1) {
      throw new BulwarkError(
        "BULWARK_REPO_INVALID_ARGUMENT",
        `${ref} matches ${hits.length} restore points`,
        {
          details: { matches: hits.map((p) => p.id) },
        },
      );
    }
    return hits[0]!;
  }

  async deletePoint(id: string): Promise<boolean> {
    if (!RECORD_ID.test(id))
      throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", `not a restore point id: ${id}`);
    return this.backend.delete(`points/${id}`);
  }

  async readSession(id: string): Promise<SessionRecord> {
    const key = `sessions/${id}`;
    const blob = await this.backend.get(key);
    const plain = decodeBlob(BlobKind.Session, Buffer.from(id, "hex"), blob, this.keys.dataKey, key);
    return parseSession(plain, id, key);
  }

  rootIsZero(point: RestorePoint): boolean {
    return isZeroId(Buffer.from(point.root, "hex"));
  }

  static rootHex(id: Buffer): string {
    return idToHex(id);
  }
}
