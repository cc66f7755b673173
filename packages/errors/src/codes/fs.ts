import { defineCodes } from "../define.js";

// Raised by @bulwark/filesystems. Images come from endpoints and may be damaged or hostile, so every
// structural check fails with one of these rather than a RangeError or a hang.
export const fsCodes = defineCodes("FS", {
  BULWARK_FS_CORRUPT: {
    http: 422,
    grpc: "DATA_LOSS",
    summary:
      "A partition table or filesystem structure is damaged or inconsistent; the message names the field.",
  },
  BULWARK_FS_CHECKSUM_MISMATCH: {
    http: 422,
    grpc: "DATA_LOSS",
    summary: "A checksummed structure (GPT header or entry array) does not match its checksum.",
  },
  BULWARK_FS_OUT_OF_RANGE: {
    http: 422,
    grpc: "OUT_OF_RANGE",
    summary: "A structure points outside the volume or image it belongs to.",
  },
  BULWARK_FS_UNSUPPORTED: {
    http: 422,
    grpc: "UNIMPLEMENTED",
    summary:
      "The filesystem or file uses a feature the reader does not handle (e.g. NTFS compression); used-range callers read everything instead.",
  },
  BULWARK_FS_NOT_RECOGNISED: {
    http: 422,
    grpc: "FAILED_PRECONDITION",
    summary: "No known partition table or filesystem signature was found.",
  },
  BULWARK_FS_READ_FAILED: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary: "The underlying byte source (device, image or restore point) failed or returned a short read.",
  },
  BULWARK_FS_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "No file, directory or partition exists at the given path inside the image.",
  },
  BULWARK_FS_NOT_A_DIRECTORY: {
    http: 400,
    grpc: "FAILED_PRECONDITION",
    summary: "A path component or the listed path is not a directory.",
  },
  BULWARK_FS_IS_A_DIRECTORY: {
    http: 400,
    grpc: "FAILED_PRECONDITION",
    summary: "File content was asked for a directory; list it or download it as an archive instead.",
  },
  BULWARK_FS_NOT_A_SYMLINK: {
    http: 400,
    grpc: "FAILED_PRECONDITION",
    summary: "A link target was asked for a path that is not a symbolic link or reparse point.",
  },
  BULWARK_FS_INVALID_PATH: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "The path or name pattern is malformed (not absolute, empty or '..' components, NUL, too long).",
  },
  BULWARK_FS_LOOP: {
    http: 422,
    grpc: "DATA_LOSS",
    summary:
      "A directory tree, FAT chain or attribute list loops back on itself or nests beyond the depth limit.",
  },
});
