import { BulwarkError } from "@bulwark/errors";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BlobKind, decodeBlob, decodeNode, encodeBlob, encodeNode } from "../src/index.js";
import { decodePlainFile, encodePlainFile } from "../src/plain-file.js";
import { parsePoint } from "../src/records.js";

const KEY = Buffer.alloc(32, 3);
const NAME = Buffer.alloc(32, 5);

/** Runs fn; it may only succeed or throw a BulwarkError with one of the codes. */
function typedOnly(fn: () => unknown, codes: string[]): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BulwarkError);
    expect(codes).toContain((err as BulwarkError).code);
  }
}

const BAD = ["BULWARK_REPO_CORRUPT", "BULWARK_REPO_UNSUPPORTED_VERSION"];

describe("garbage and truncated inputs give typed errors, never a crash or wrong data", () => {
  it("blobs: arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        typedOnly(() => decodeBlob(BlobKind.Data, NAME, Buffer.from(bytes), KEY, "fuzz"), BAD);
      }),
      { numRuns: 500 },
    );
  });

  it("blobs: a valid blob truncated, extended or with any byte changed is refused", () => {
    const plain = Buffer.from("some chunk content ".repeat(50));
    const blob = encodeBlob(BlobKind.Data, NAME, plain, KEY);
    expect(decodeBlob(BlobKind.Data, NAME, blob, KEY, "ok").equals(plain)).toBe(true);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.nat(blob.length - 1).map((n) => blob.subarray(0, n)),
          fc.uint8Array({ minLength: 1, maxLength: 8 }).map((extra) => Buffer.concat([blob, extra])),
          fc.tuple(fc.nat(blob.length - 1), fc.integer({ min: 1, max: 255 })).map(([at, x]) => {
            const b = Buffer.from(blob);
            b[at] = b[at]! ^ x;
            return b;
          }),
        ),
        (bad) => {
          expect(() => decodeBlob(BlobKind.Data, NAME, bad, KEY, "fuzz")).toThrow(BulwarkError);
          typedOnly(() => decodeBlob(BlobKind.Data, NAME, bad, KEY, "fuzz"), BAD);
        },
      ),
      { numRuns: 400 },
    );
  });

  it("index nodes: arbitrary and mutated bytes", () => {
    const good = encodeNode(0, Buffer.alloc(4 * 32, 9));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
          fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 1, max: 255 })).map(([at, x]) => {
            const b = Buffer.from(good);
            b[at] = b[at]! ^ x;
            return b;
          }),
        ),
        (bytes) => {
          typedOnly(() => {
            const entries = decodeNode(bytes, 0, 4, "fuzz");
            // If it parses, it must be exactly the shape asked for.
            expect(entries.length).toBe(4 * 32);
          }, BAD);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("plain files and restore-point records: arbitrary text", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        typedOnly(() => decodePlainFile(Buffer.from(text), "bulwark-repo-config", 1, "fuzz"), BAD);
        typedOnly(() => parsePoint(Buffer.from(text), "0".repeat(32), "fuzz"), BAD);
      }),
      { numRuns: 300 },
    );
    const good = encodePlainFile("bulwark-repo-config", 1, { a: 1 });
    expect(decodePlainFile(good, "bulwark-repo-config", 1, "ok")).toEqual({ a: 1 });
    expect(() =>
      decodePlainFile(encodePlainFile("bulwark-repo-config", 2, {}), "bulwark-repo-config", 1, "v2"),
    ).toThrow(expect.objectContaining({ code: "BULWARK_REPO_UNSUPPORTED_VERSION" }));
  });

  it("restore-point records: JSON with wrong shapes", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        typedOnly(() => parsePoint(Buffer.from(JSON.stringify(v)), "0".repeat(32), "fuzz"), BAD);
      }),
      { numRuns: 300 },
    );
  });
});
