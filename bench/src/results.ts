/** Everything one bench run measured; the report and the docs are derived from this alone. */

export interface StepMeasurement {
  /** Wall time the harness measured around the command, seconds. */
  wallSeconds: number;
  userSeconds: number;
  systemSeconds: number;
  maxRssBytes: number;
}

/** What only the agent → gRPC → server path reports, per backup step. */
export interface AgentPathStep {
  /** `counters.bytesSent` from the agent's `backup --json` report. */
  bytesSent: number;
  /** bulwark-server's VmHWM (/proc/<pid>/status) read right after the step, reset before it. */
  serverPeakRssBytes: number;
}

/** Issue 6 on the agent → server path: the full restore's extras, the delta restore, one file over REST. */
export interface AgentRestoreRun {
  /** The full restore (step c): payload bytes the agent fetched, bulwark-server's CPU seconds meanwhile. */
  full: { bytesFetched: number; serverCpuSeconds: number };
  /** Delta restore of the same point onto the full restore's target after `changedBlocks` scattered 4 KiB writes to it. */
  delta: StepMeasurement & {
    changedBlocks: number;
    bytesFetched: number;
    volumeBytes: number;
    chunksUnchanged: number;
    serverCpuSeconds: number;
    /** The target's SHA-256 after the delta equals its (verified) SHA-256 after the full restore. */
    verified: boolean;
  };
  /** One file through GET /api/v1/backups/:id/files/content, timed from the request. */
  file: {
    path: string;
    bytes: number;
    /** Response headers received. */
    headersSeconds: number;
    firstByteSeconds: number;
    lastByteSeconds: number;
    /** The body's SHA-256 equals the file's as debugfs reads it from the image. */
    verified: boolean;
  };
}

export interface ToolRun {
  tool: string;
  version: string;
  backupLabel: string;
  restoreLabel: string;
  ingest: StepMeasurement & { repoBytes: number };
  incremental: StepMeasurement & { repoBytes: number };
  restore: StepMeasurement & { verified: boolean; restoredSha256: string; mismatch?: string };
  /** Only for the agent → server path: bytes the agent sent and the server's peak RSS. */
  agentPath?: { ingest: AgentPathStep; incremental: AgentPathStep };
  /** Only for bulwark-repo: the ingest floor (floor.ts), measured right after its full ingest. */
  floor?: { packed: StepMeasurement; files: StepMeasurement };
  /** Only for the agent → server path: the issue-6 restore measurements. */
  agentRestore?: AgentRestoreRun;
  /** The exact commands, work directory shown as $WORK. */
  commands: {
    init: string;
    backup: string;
    incremental: string;
    restore: string;
    deltaRestore?: string;
    /** The ingest floor's two commands, one file per thread then one file per blob. */
    floor?: string[];
    fileDownload?: string;
  };
}

export interface MachineFacts {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  node: string;
  filesystem: string;
  /** 1-minute load average when the measurements started and ended: how contended the machine was. */
  loadAverage: { start: number; end: number };
}

export interface ImageFacts {
  sizeBytes: number;
  fill: number;
  seed: string;
  files: number;
  dataBytes: number;
  byKind: Record<string, { files: number; bytes: number }>;
  sha256: string;
  mkfsCommand: string;
  pinCommand: string;
}

export interface BenchResults {
  date: string;
  command: string;
  /** How many times the scenarios ran; every measurement is the median over the runs. */
  runs: number;
  machine: MachineFacts;
  image: ImageFacts;
  writes: { count: number; changedBytes: number; sha256After: string };
  tools: ToolRun[];
}
