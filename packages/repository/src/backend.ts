/**
 * The storage behind a repository: a key → bytes map (spec, "Storage backends"). Keys are
 * "/"-separated relative paths such as `chunks/ab/<64 hex>`. Every method may run concurrently with
 * every other; `putIfAbsent` is atomic (a reader sees the whole object or none) and durable when it
 * resolves. Failures are BulwarkErrors: BULWARK_REPO_NOT_FOUND, _IO, _NO_SPACE.
 */
export interface Backend {
  /**
   * Stores bytes under key unless it exists; true if this call created it. An existing object is
   * touched (made young for GC), and if it vanishes meanwhile (GC's trash) the call creates it:
   * false means the object is there and GC will keep it, which ingest relies on.
   */
  putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean>;
  /** Atomically replaces (or creates) key; for small mutable files such as heartbeats. */
  replace(key: string, bytes: Uint8Array): Promise<void>;
  get(key: string): Promise<Buffer>;
  /** Bytes [offset, offset + length) clipped to the object's end. */
  getRange(key: string, offset: number, length: number): Promise<Buffer>;
  stat(key: string): Promise<ObjectStat | null>;
  /** Keys under prefix (a directory such as "points/"), recursively, in no particular order. */
  list(prefix: string): AsyncIterable<string>;
  /** Idempotent; true if it existed. */
  delete(key: string): Promise<boolean>;
  /** Sets the modification time to now; false if absent. */
  touch(key: string): Promise<boolean>;
  /** Moves from → to (replacing to); false if from is absent. */
  rename(from: string, to: string): Promise<boolean>;
  /** Temp files of writers that crashed, older than the given time (for GC). */
  removeStaleTemp?(olderThanMs: number): Promise<number>;
  /**
   * Batched durability (optional; spec, "Write ordering and crash safety"): `stage` writes bytes
   * for key to a hidden temp object, neither visible nor durable; `publish` makes a batch of staged
   * objects durable with one barrier, then visible under their keys with `putIfAbsent` semantics
   * (true if this call created the key), then durable again. A crash before `publish` resolves
   * leaves at most whole, durable objects under their keys (never torn ones) and hidden temps that
   * GC removes. Backends without it get `putIfAbsent` per object.
   */
  stage?(key: string, bytes: Uint8Array): Promise<StagedObject>;
  publish?(staged: readonly StagedObject[]): Promise<boolean[]>;
  /** Drops staged objects that will not be published (best effort). */
  discard?(staged: readonly StagedObject[]): Promise<void>;
}

/** A staged, not yet published object (opaque to callers). */
export interface StagedObject {
  readonly key: string;
  readonly bytes: number;
}

export interface ObjectStat {
  size: number;
  mtimeMs: number;
}
