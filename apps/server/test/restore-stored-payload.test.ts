import { createHmac, randomBytes } from "node:crypto";
import { isBulwarkError } from "@bulwark/errors";
import {
  BlobKind,
  encodeBlob,
  BLOB_OVERHEAD as REPO_BLOB_OVERHEAD,
  MAX_BLOB_PLAINTEXT as REPO_MAX_BLOB_PLAINTEXT,
} from "@bulwark/repository";
import { describe, expect, it } from "vitest";
import { decompress } from "zstd-napi";
import { BLOB_OVERHEAD, MAX_BLOB_PLAINTEXT, openStoredPayload } from "../src/restore/stored-payload.js";

// The restore stream sends a chunk as stored (docs/protocol.md §3, "Payloads travel as stored"):
// blobs written by the repository's own encoder open to their zstd frame or raw plaintext, and any
// change to the blob, its name or the key is refused.

const dataKey = randomBytes(32);
const idKey = randomBytes(32);
const idOf = (plain: Buffer) => createHmac("sha256", idKey).update(plain).digest();

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isBulwarkError(err)) return err.code;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("openStoredPayload", () => {
  it("has the repository's blob limits (its own copies keep the package out of the read workers)", () => {
    expect([MAX_BLOB_PLAINTEXT, BLOB_OVERHEAD]).toEqual([REPO_MAX_BLOB_PLAINTEXT, REPO_BLOB_OVERHEAD]);
  });

  const text = Buffer.from("the help desk restores a volume ".repeat(2048));
  const random = randomBytes(64 * 1024);

  it("returns the repository's zstd frame for a compressible chunk, unchanged in meaning", () => {
    const id = idOf(text);
    const stored = openStoredPayload(encodeBlob(BlobKind.Data, id, text, dataKey), id, dataKey, "c");
    expect(stored.zstd).toBe(true);
    expect(stored.plainSize).toBe(text.length);
    expect(stored.payload.length).toBeLessThan(text.length);
    expect(decompress(stored.payload).equals(text)).toBe(true);
  });

  it("returns the plaintext of a chunk stored raw (incompressible)", () => {
    const id = idOf(random);
    const stored = openStoredPayload(encodeBlob(BlobKind.Data, id, random, dataKey), id, dataKey, "c");
    expect(stored.zstd).toBe(false);
    expect(stored.payload.equals(random)).toBe(true);
  });

  it("refuses a flipped byte, another chunk's name, another key, an index blob and a short blob", () => {
    const id = idOf(text);
    const blob = encodeBlob(BlobKind.Data, id, text, dataKey);
    for (const at of [20, 45, blob.length - 1]) {
      const bad = Buffer.from(blob);
      bad[at]! ^= 1;
      expect(codeOf(() => openStoredPayload(bad, id, dataKey, "c"))).toBe("BULWARK_REPO_CORRUPT");
    }
    expect(codeOf(() => openStoredPayload(blob, idOf(random), dataKey, "c"))).toBe("BULWARK_REPO_CORRUPT");
    expect(codeOf(() => openStoredPayload(blob, id, randomBytes(32), "c"))).toBe("BULWARK_REPO_CORRUPT");
    const node = encodeBlob(BlobKind.IndexNode, id, text, dataKey);
    expect(codeOf(() => openStoredPayload(node, id, dataKey, "c"))).toBe("BULWARK_REPO_CORRUPT");
    expect(codeOf(() => openStoredPayload(blob.subarray(0, 40), id, dataKey, "c"))).toBe(
      "BULWARK_REPO_CORRUPT",
    );
    const future = Buffer.from(blob);
    future[4] = 2;
    expect(codeOf(() => openStoredPayload(future, id, dataKey, "c"))).toBe(
      "BULWARK_REPO_UNSUPPORTED_VERSION",
    );
  });
});
