import { defineCodes } from "../define.js";

// Volume restore through the agent (docs/protocol.md §3 RestoreService, docs/bare-metal-restore.md):
// the server's RestoreService refusing a stream, and the agent refusing a target or a chunk.
export const restoreCodes = defineCodes("RESTORE", {
  BULWARK_RESTORE_JOB_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary:
      "No restore job with this ID is assigned to the calling agent (unknown and foreign jobs get the same answer).",
  },
  BULWARK_RESTORE_JOB_NOT_RUNNABLE: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "The restore job has already ended (succeeded, failed or cancelled) and cannot stream again.",
  },
  BULWARK_RESTORE_JOB_INVALID: {
    http: 500,
    grpc: "FAILED_PRECONDITION",
    summary: "The restore job's parameters are unusable (no restore point, bad mode); it must be recreated.",
  },
  BULWARK_RESTORE_MODE_MISMATCH: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "The agent asked for a full or delta restore, but the job was started with the other mode.",
  },
  BULWARK_RESTORE_POINT_UNAVAILABLE: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary:
      "The restore point is being deleted, missing, or its repository cannot be opened on this server node.",
  },
  BULWARK_RESTORE_BAD_RANGE: {
    http: 400,
    grpc: "OUT_OF_RANGE",
    summary:
      "A Want range is empty, out of order, beyond the volume, larger than the window, or its have runs do not cover it.",
  },
  BULWARK_RESTORE_INCOMPLETE: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary:
      "The agent ended the restore stream before every chunk of the restore point was covered, or (protocol minor 2) without confirming the target complete (RestoreComplete).",
  },
  BULWARK_RESTORE_TARGET_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "The restore target does not exist or is neither a block device nor a regular file.",
  },
  BULWARK_RESTORE_TARGET_BUSY: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary:
      "The restore target (or one of its partitions) is mounted, held by another device, or open elsewhere.",
  },
  BULWARK_RESTORE_TARGET_TOO_SMALL: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "The restore target is smaller than the volume of the restore point.",
  },
  BULWARK_RESTORE_FOREIGN_TARGET: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary:
      "The target is not the device the backup was taken of; confirm with allow_foreign_target / --yes-overwrite-foreign.",
  },
  BULWARK_RESTORE_CHUNK_INVALID: {
    http: 502,
    grpc: "DATA_LOSS",
    summary:
      "The server sent a chunk whose content does not hash to its ID, or that lies outside the requested range; nothing of it was written.",
  },
  BULWARK_RESTORE_VERIFY_FAILED: {
    http: 502,
    grpc: "DATA_LOSS",
    summary:
      "The restored volume's chunk IDs do not add up to the restore point's index digest (chunks skipped or misplaced); do not use the target.",
  },
  BULWARK_RESTORE_WRITE_FAILED: {
    http: 500,
    grpc: "INTERNAL",
    summary:
      "Writing, syncing or fixing up the restore target failed; the restore can be resumed once the cause is fixed.",
  },
});
