import type { JobPhase, RestoreCommand, RestoreStats } from "@bulwark/protocol";

// The seam between the daemon and restores on this machine (apps/agent/src/restore/ implements
// it): the daemon acknowledges the command, tracks the job, forwards progress and reports the
// result; the runner does the restore. Until one is passed to the daemon, restore commands are
// refused with BULWARK_CONTROL_COMMAND_UNSUPPORTED.

export interface RestoreProgress {
  phase: JobPhase;
  bytesDone: number;
  bytesTotal: number;
  bytesTransferred: number;
}

export interface RestoreRunner {
  /**
   * Restores `command.restore_point_id` onto `command.target_path`. Rejects with a BulwarkError
   * on failure; must stop soon after `signal` aborts (the job is then reported CANCELLED).
   */
  run(
    command: RestoreCommand,
    opts: { signal: AbortSignal; onProgress: (p: RestoreProgress) => void },
  ): Promise<RestoreStats>;
}
