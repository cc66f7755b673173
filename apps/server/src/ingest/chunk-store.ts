import { BulwarkError } from "@bulwark/errors";
import { chunkKey, idToHex } from "@bulwark/repository";
import type { OpenRepository } from "../repositories/registry.js";

// Stores one verified batch of uploaded chunks durably, following the repository's ingest rules
// (docs/repository-format.md, "Ingest"): hash in the codec workers (never on the event loop),
// refuse the whole batch if any chunk's content does not hash to its ID, confirm index hits by
// touching the chunk file (a chunk GC moved to the trash is moved back), encode and write the
// rest, then record them in the chunk index. When this resolves, every chunk is durable.

export interface PlainChunk {
  id: Buffer;
  plain: Buffer;
}

export interface StoreResult {
  /** Chunks this batch wrote. */
  stored: number;
  /** Chunks that were already in the repository. */
  alreadyPresent: number;
  /** Plaintext bytes of the chunks this batch wrote. */
  newPlainBytes: number;
  /** Bytes of the chunk files this batch wrote (encrypted blobs, as stored). */
  newStoredBytes: number;
}

export async function storeChunks(
  target: OpenRepository,
  chunks: readonly PlainChunk[],
): Promise<StoreResult> {
  const { repo, index } = target;
  const ticket = await repo.pool.hash(chunks.map((c) => c.plain));
  const bad = chunks.findIndex((c, i) => !ticket.ids[i]!.equals(c.id));
  if (bad >= 0) {
    await repo.pool.encode(ticket, []); // releases the batch held in the worker
    throw new BulwarkError(
      "BULWARK_PROTO_CHUNK_ID_MISMATCH",
      `chunk ${bad} of the batch does not hash to its ID; nothing of the batch was stored`,
      { details: { position: bad, id: idToHex(chunks[bad]!.id) } },
    );
  }
  // The first occurrence of each ID in the batch does the work; repeats count as present.
  const firstOf = new Map<string, number>();
  chunks.forEach((c, i) => {
    const hex = idToHex(c.id);
    if (!firstOf.has(hex)) firstOf.set(hex, i);
  });
  const unique = [...firstOf.values()];
  const known = await index.has(unique.map((i) => chunks[i]!.id));
  const confirmed = await Promise.all(
    unique.map(async (i, k) => {
      if (!known[k]) return false;
      const key = chunkKey(chunks[i]!.id);
      if (await repo.backend.touch(key)) return true;
      // GC may be sweeping it right now: take it back from the trash (spec, GC step 4).
      return (await repo.backend.rename(`trash/${idToHex(chunks[i]!.id)}`, key)) && repo.backend.touch(key);
    }),
  );
  const toWrite = unique.filter((_, k) => !confirmed[k]);
  const blobs = await repo.pool.encode(ticket, toWrite);
  const created = await Promise.all(
    blobs.map(async (blob, k) => {
      const key = chunkKey(chunks[toWrite[k]!]!.id);
      if (await repo.backend.putIfAbsent(key, blob)) return true;
      // Already there (another stream, or an index that lagged the files): make it young for GC.
      await repo.backend.touch(key);
      return false;
    }),
  );
  await index.record(
    toWrite.map((i, k) => ({
      id: chunks[i]!.id,
      plainSize: chunks[i]!.plain.length,
      storedSize: blobs[k]!.length,
    })),
  );
  let stored = 0;
  let newPlainBytes = 0;
  let newStoredBytes = 0;
  created.forEach((c, k) => {
    if (c) {
      stored++;
      newPlainBytes += chunks[toWrite[k]!]!.plain.length;
      newStoredBytes += blobs[k]!.length;
    }
  });
  return { stored, alreadyPresent: chunks.length - stored, newPlainBytes, newStoredBytes };
}
