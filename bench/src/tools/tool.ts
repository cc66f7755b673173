import type { CommandSpec, Measurement } from "../exec.js";
import type { Requirement } from "../prereqs.js";
import type { AgentPathStep, AgentRestoreRun } from "../results.js";

/** What every adapter gets: a private directory and the passphrase all tools share. */
export interface ToolContext {
  /** Empty directory for this tool only (repository, caches, key files). */
  dir: string;
  /** File holding the repository passphrase (same for every tool). */
  passphraseFile: string;
  passphrase: string;
}

/** Where a restore command leaves the image, so the harness can hash it. */
export interface RestoreSpec {
  command: CommandSpec;
  restoredPath: string;
}

/** What a tool's extra restore scenarios get after its measured (and checked) restore. */
export interface AfterRestoreContext {
  /** The restored file, still in place, and its SHA-256 (checked against the image by the harness). */
  restoredPath: string;
  restoredSha256: string;
  /** The restore command's stdout (e.g. a --json report). */
  restoreStdout: string;
  /** The image as the restored backup saw it (the scattered writes applied). */
  image: string;
  seed: string;
  /** Runs a command under GNU time, as the harness measures every step. */
  measure: (spec: CommandSpec) => Promise<Measurement>;
  /** A command as the docs show it. */
  show: (spec: CommandSpec) => string;
  scratchDir: string;
}

/**
 * One backup system under test, reduced to what the scenarios need: back up an image file, name
 * the result, restore it to a file. The harness measures the commands an adapter returns and owns
 * everything else (timing, sizes, hashing), so adding a system (e.g. the agent → gRPC → server path)
 * means writing one of these and nothing more.
 */
export interface BackupTool {
  /** Short id used in `--tools` and in the report. */
  readonly id: string;
  /** What the report calls the ingest and restore commands, e.g. "restic backup". */
  readonly backupLabel: string;
  readonly restoreLabel: string;
  /** Debian packages the tool needs (installed by the harness when running as root). */
  readonly requirements: Requirement[];
  /** Unmeasured one-time work before anything else (build a binary, start a server). */
  prepare?(): Promise<void>;
  version(): Promise<string>;
  /** The command that creates an empty repository (run once, unmeasured). */
  init(): CommandSpec;
  /** The measured backup of `image` under the name `name`. */
  backup(image: string, name: string): CommandSpec;
  /** Resolves what `restore` needs to find the backup just made (unmeasured). */
  snapshotRef(name: string, backupStdout: string): Promise<string>;
  /**
   * The measured restore of `ref` (a backup of `image`) into the empty directory `outDir`. Working
   * out the command (e.g. asking a server for a restore job) is not measured.
   */
  restore(ref: string, image: string, outDir: string): RestoreSpec | Promise<RestoreSpec>;
  /**
   * Only after a restore that returned the image: further restore scenarios only this tool has
   * (delta restore, single-file download), measured by the adapter itself, with their commands.
   */
  afterRestore?(
    ctx: AfterRestoreContext,
  ): Promise<{ run: AgentRestoreRun; commands: { deltaRestore: string; fileDownload: string } }>;
  /**
   * Unmeasured set-up, then the two measured commands of the ingest floor (floor.ts): the
   * repository's primitives on `image` without a repository, blobs written into one file per
   * thread (`packed`) or one file per blob (`files`), into the empty directories given.
   */
  floor?(
    image: string,
    packedDir: string,
    filesDir: string,
  ): Promise<{ packed: CommandSpec; files: CommandSpec }>;
  /** Directories whose total size is the repository's size (caches and temp files excluded). */
  repositoryDirs(): string[];
  /** Unmeasured, every run, before `init` (the harness has just emptied `dir`): e.g. a database. */
  beforeInit?(): Promise<void>;
  /** Unmeasured, every run, right after `init`: e.g. start a server on the new repository. */
  afterInit?(): Promise<void>;
  /** Unmeasured, right after each measured backup: what only this tool can report about it. */
  afterBackup?(step: "ingest" | "incremental", backupStdout: string): Promise<AgentPathStep>;
  /**
   * Unmeasured, only when a restore did not return the image byte for byte: why, in one line, and
   * whether the difference is one the tool promises (a capture of allocated blocks only restores
   * free space as zeros). Anything else stays a failed restore.
   */
  explainMismatch?(restoredPath: string, image: string): Promise<{ text: string; acceptable: boolean }>;
  /** Unmeasured, at the end of every run (also on failure): stop what `afterInit` started. */
  afterRun?(): Promise<void>;
  /** Unmeasured teardown (stop a server); the harness deletes `dir` itself. Must be idempotent. */
  stop?(): Promise<void>;
}
