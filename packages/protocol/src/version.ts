import { BulwarkError } from "@bulwark/errors";
import { Metadata } from "@grpc/grpc-js";

/**
 * Version of the agent/server contract (docs/protocol.md §1). `major` is the protobuf package
 * version (bulwark.v1); `minor` grows by one with every addition a peer may need to know about.
 * Minor 1: job commands and results carry the attempt number (`attempt`), the agent's dedupe key.
 * Minor 2: a restore ends with the agent's `RestoreComplete` before its half-close; only that
 * finishes the job SUCCEEDED (a cancelled call can look like a half-close to the server).
 */
export const PROTOCOL_VERSION = { major: 1, minor: 2 } as const;

/** "major.minor", as sent in the `bulwark-protocol` header and in the hellos. */
export const PROTOCOL_VERSION_STRING = `${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor}`;

/** The protobuf package every service lives in. */
export const PROTOBUF_PACKAGE = "bulwark.v1";

/** Metadata header every call carries with the caller's protocol version. */
export const PROTOCOL_HEADER = "bulwark-protocol";

export interface ProtocolVersion {
  major: number;
  minor: number;
}

/** Parses "major.minor"; undefined for anything else (so a caller can refuse it with a clear code). */
export function parseProtocolVersion(text: string): ProtocolVersion | undefined {
  const m = /^(\d{1,4})\.(\d{1,4})$/.exec(text);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}

/** The metadata a client attaches to every call: its own protocol version. */
export function protocolMetadata(version: string = PROTOCOL_VERSION_STRING): Metadata {
  const metadata = new Metadata();
  metadata.set(PROTOCOL_HEADER, version);
  return metadata;
}

/**
 * Server side: checks a call's `bulwark-protocol` header against the supported window
 * `[minSupportedMinor, PROTOCOL_VERSION.minor]` of this major and returns the minor both sides use.
 * Throws BULWARK_PROTO_VERSION_UNSUPPORTED for a missing, malformed, foreign-major or too old version.
 */
export function negotiateProtocol(metadata: Metadata, minSupportedMinor = 0): number {
  const values = metadata.get(PROTOCOL_HEADER);
  const raw = values.length === 1 && typeof values[0] === "string" ? values[0] : undefined;
  const version = raw === undefined ? undefined : parseProtocolVersion(raw);
  const supported = `${PROTOCOL_VERSION.major}.${minSupportedMinor} .. ${PROTOCOL_VERSION_STRING}`;
  if (!version || version.major !== PROTOCOL_VERSION.major || version.minor < minSupportedMinor) {
    throw new BulwarkError(
      "BULWARK_PROTO_VERSION_UNSUPPORTED",
      `protocol version ${raw === undefined ? "(none)" : JSON.stringify(raw)} is not supported; this server accepts ${supported}`,
      { details: { received: raw ?? null, supported } },
    );
  }
  // An agent newer than the server is fine: it negotiates down to what the server knows.
  return Math.min(version.minor, PROTOCOL_VERSION.minor);
}
