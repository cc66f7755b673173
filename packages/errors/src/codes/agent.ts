import { defineCodes } from "../define.js";

// Raised by bulwark-agent's capture side: external commands, snapshots, hooks and its local cache.
export const agentCodes = defineCodes("AGENT", {
  BULWARK_AGENT_COMMAND_FAILED: {
    http: 500,
    grpc: "INTERNAL",
    summary:
      "An external command (lvcreate, fsfreeze, PowerShell, …) failed; details carry its exit code and stderr.",
  },
  BULWARK_AGENT_COMMAND_OUTPUT_INVALID: {
    http: 500,
    grpc: "INTERNAL",
    summary:
      "An external command's output could not be parsed (unexpected lsblk, lvs, thin_delta or PowerShell output).",
  },
  BULWARK_AGENT_SNAPSHOT_FAILED: {
    http: 500,
    grpc: "FAILED_PRECONDITION",
    summary: "A snapshot could not be created, opened or released; nothing was read from it.",
  },
  BULWARK_AGENT_SNAPSHOT_INCONSISTENT: {
    http: 500,
    grpc: "ABORTED",
    summary: "The source changed or was thawed while it was being read; the capture must not be committed.",
  },
  BULWARK_AGENT_HOOK_FAILED: {
    http: 500,
    grpc: "FAILED_PRECONDITION",
    summary: "A pre-snapshot hook command failed, so no snapshot was taken.",
  },
  BULWARK_AGENT_INTERRUPTED: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary:
      "The agent was stopped (SIGTERM/SIGINT) during the job: it released the snapshot, ran the post hooks and committed nothing; the job may be run again.",
  },
  BULWARK_AGENT_STALLED: {
    http: 500,
    grpc: "INTERNAL",
    summary:
      "An agent command was left waiting with nothing that could wake it (a bug): it exits non-zero, unfinished, never as a success; a backup run again resumes its session.",
  },
  BULWARK_AGENT_CACHE_INVALID: {
    http: 500,
    grpc: "DATA_LOSS",
    summary: "The local index cache is damaged (bad magic, version or checksum); it is ignored and rebuilt.",
  },
  BULWARK_AGENT_INVALID_ARGUMENT: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "A capture parameter (volume name, chunk size, range, device path) is invalid.",
  },
});
