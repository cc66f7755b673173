import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { isBulwarkError } from "@bulwark/errors";
import { Metadata } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  AgentHello,
  Chunk,
  ConnectRequest,
  negotiateProtocol,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  parseProtocolVersion,
  protocolMetadata,
} from "../src/index.js";

// The compatibility rules of docs/protocol.md §1, checked against the generated code.

function headerOf(version?: string): Metadata {
  const metadata = new Metadata();
  if (version !== undefined) metadata.set(PROTOCOL_HEADER, version);
  return metadata;
}

describe("version negotiation", () => {
  it("parses major.minor and nothing else", () => {
    expect(parseProtocolVersion("1.0")).toEqual({ major: 1, minor: 0 });
    expect(parseProtocolVersion("1.12")).toEqual({ major: 1, minor: 12 });
    for (const bad of ["1", "1.0.0", "v1.0", " 1.0", "1.-1", ""])
      expect(parseProtocolVersion(bad)).toBeUndefined();
  });

  it("negotiates a newer agent down to the server's minor", () => {
    expect(negotiateProtocol(protocolMetadata())).toBe(PROTOCOL_VERSION.minor);
    expect(negotiateProtocol(headerOf(`${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor + 7}`))).toBe(
      PROTOCOL_VERSION.minor,
    );
  });

  it("refuses a missing header, another major, garbage, and minors below the supported window", () => {
    const refused = (metadata: Metadata, minSupported = 0) => {
      try {
        negotiateProtocol(metadata, minSupported);
      } catch (error) {
        return isBulwarkError(error, "BULWARK_PROTO_VERSION_UNSUPPORTED");
      }
      return false;
    };
    expect(refused(headerOf())).toBe(true);
    expect(refused(headerOf(`${PROTOCOL_VERSION.major + 1}.0`))).toBe(true);
    expect(refused(headerOf("latest"))).toBe(true);
    expect(
      refused(headerOf(`${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor}`), PROTOCOL_VERSION.minor + 1),
    ).toBe(true);
    expect(refused(protocolMetadata())).toBe(false);
  });
});

describe("wire compatibility of the generated code", () => {
  it("skips fields it does not know (a newer peer's additions) and keeps the rest", () => {
    const known = AgentHello.encode(
      AgentHello.fromPartial({
        protocolVersion: "1.3",
        agentVersion: "2.0.0",
        capabilities: ["restore.delta"],
      }),
    ).finish();
    const writer = new BinaryWriter();
    writer.raw(known);
    writer.uint32((99 << 3) | 0).uint64(123456789); // varint field 99
    writer.uint32((100 << 3) | 2).bytes(Buffer.from("future")); // length-delimited field 100
    writer.uint32((101 << 3) | 5).fixed32(7); // fixed32 field 101
    const decoded = AgentHello.decode(writer.finish());
    expect(decoded.protocolVersion).toBe("1.3");
    expect(decoded.agentVersion).toBe("2.0.0");
    expect(decoded.capabilities).toEqual(["restore.delta"]);
  });

  it("decodes an unknown enum value without failing, so the receiver can treat it as unspecified", () => {
    const writer = new BinaryWriter();
    writer.uint32((3 << 3) | 0).int32(42); // Chunk.encoding = 42, unknown
    expect(Chunk.decode(writer.finish()).encoding).toBe(42);
  });

  it("decodes an unknown oneof member as no member set", () => {
    const writer = new BinaryWriter();
    writer.uint32((1 << 3) | 0).uint64(5); // seq
    writer.uint32((77 << 3) | 2).bytes(Buffer.from([8, 1])); // a message member from the future
    const decoded = ConnectRequest.decode(writer.finish());
    expect(decoded.seq).toBe(5);
    expect(decoded.message).toBeUndefined();
  });

  it("refuses a 64-bit value that a JavaScript number cannot hold exactly", () => {
    const writer = new BinaryWriter();
    writer
      .uint32((2 << 3) | 2)
      .fork()
      .uint64(2n ** 60n)
      .join(); // Chunk.offsets (packed)
    expect(() => Chunk.decode(writer.finish())).toThrow(/MAX_SAFE_INTEGER/);
  });
});
