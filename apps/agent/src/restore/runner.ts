import { JobPhase, type RestoreCommand, RestoreMode, type RestoreStats } from "@bulwark/protocol";
import type { ChannelCredentials } from "@grpc/grpc-js";
import { invalidArgument } from "../errors.js";
import { RestoreResumeFile } from "./resume-file.js";
import { type RestoreReport, runRestore } from "./run.js";

// The daemon's side of restores: a RestoreCommand from the control stream → runRestore, with the
// resume index kept in the state directory (so a restarted agent continues where it synced),
// progress in the daemon's terms, and the RestoreStats its JobResult reports. Its shape is the
// daemon's RestoreRunner seam (apps/agent/src/daemon/restore-runner.ts).

export interface CommandRestoreProgress {
  phase: JobPhase;
  bytesDone: number;
  bytesTotal: number;
  bytesTransferred: number;
}

export interface CommandRestoreRunnerOptions {
  /** The agent listener (`host:port` or `https://host:port`). */
  serverUrl: string;
  /** The agent's current mTLS credentials (read anew per restore: the certificate renews). */
  credentials: () => Promise<ChannelCredentials>;
  stateDir: string;
  channelOptions?: Record<string, string | number>;
  threads?: number;
}

export function restoreStatsOf(report: RestoreReport): RestoreStats {
  return {
    volumeBytes: report.volumeBytes,
    bytesReceived: report.bytesFetched,
    chunksReceived: report.chunksReceived,
    chunksUnchanged: report.chunksUnchanged,
    chunksZero: report.chunksZeroWritten + report.chunksZeroSkipped,
    durationMs: report.durationMs,
  };
}

/** A RestoreRunner for the daemon: `run(command, { signal, onProgress })` → RestoreStats. */
export function createCommandRestoreRunner(opts: CommandRestoreRunnerOptions) {
  return {
    async run(
      command: RestoreCommand,
      ctl: { signal: AbortSignal; onProgress: (p: CommandRestoreProgress) => void },
    ): Promise<RestoreStats> {
      const mode =
        command.mode === RestoreMode.RESTORE_MODE_DELTA
          ? "delta"
          : command.mode === RestoreMode.RESTORE_MODE_FULL
            ? "full"
            : undefined;
      if (!mode) throw invalidArgument(`restore command ${command.jobId} has no mode`);
      if (!command.targetPath) throw invalidArgument(`restore command ${command.jobId} names no target`);
      const resume = new RestoreResumeFile(opts.stateDir, command.jobId, command.targetPath);
      const report = await runRestore({
        serverUrl: opts.serverUrl,
        credentials: await opts.credentials(),
        ...(opts.channelOptions ? { channelOptions: opts.channelOptions } : {}),
        ...(opts.threads ? { threads: opts.threads } : {}),
        jobId: command.jobId,
        targetPath: command.targetPath,
        mode,
        allowForeignTarget: command.allowForeignTarget,
        wholeDisk: command.wholeDisk,
        ...(command.restorePointId ? { expectedRestorePointId: command.restorePointId } : {}),
        resumeFromIndex: await resume.load(),
        onResumePoint: (index) => resume.save(index),
        signal: ctl.signal,
        onProgress: (p) =>
          ctl.onProgress({
            phase: JobPhase.JOB_PHASE_TRANSFER,
            bytesDone: p.bytesDone,
            bytesTotal: p.volumeBytes,
            bytesTransferred: p.bytesFetched,
          }),
      });
      // Best effort: the server has the agent's Complete, so the job is SUCCEEDED; a file left
      // behind is only read by a later attempt of this job, which a finished job never gets.
      await resume.remove().catch(() => undefined);
      return restoreStatsOf(report);
    },
  };
}
