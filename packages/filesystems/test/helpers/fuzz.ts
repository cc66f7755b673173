import { isBulwarkError } from "@bulwark/errors";
import fc from "fast-check";
import type { ByteSource } from "../../src/index.js";
import { PatchedSource } from "./sources.js";

/**
 * A run that takes longer than this on an in-memory image is looping, not working. Runs take tens
 * of milliseconds; the margin absorbs a 2-core machine shared by many test processes.
 */
export const HANG_LIMIT_MS = 10_000;

/** "ok", or the BulwarkError code; anything else (RangeError, TypeError, a hang) fails the property. */
export async function outcome(
  parse: (s: ByteSource) => Promise<unknown>,
  source: ByteSource,
  hangLimitMs = HANG_LIMIT_MS,
): Promise<"ok" | string> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("HANG")), hangLimitMs);
  });
  try {
    await Promise.race([parse(source), hang]);
    return "ok";
  } catch (err) {
    if (isBulwarkError(err)) return err.code;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Byte patches biased to the values that break parsers: 0, all-ones, sign bits, small counts. */
export function patchesIn(regions: [number, number][]): fc.Arbitrary<Map<number, number>> {
  const offset = fc.oneof(...regions.map(([start, end]) => fc.integer({ min: start, max: end - 1 })));
  const value = fc.oneof(
    fc.constantFrom(0x00, 0xff, 0x80, 0x7f, 0x01, 0x10),
    fc.integer({ min: 0, max: 255 }),
  );
  return fc.array(fc.tuple(offset, value), { minLength: 1, maxLength: 12 }).map((pairs) => new Map(pairs));
}

/** Runs `parse` over `runs` mutations of `image` inside `regions`; returns how often each outcome came up. */
export async function fuzz(
  image: Buffer,
  regions: [number, number][],
  parse: (s: ByteSource) => Promise<unknown>,
  runs: number,
): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(patchesIn(regions), async (patches) => {
      const result = await outcome(parse, new PatchedSource(image, patches));
      seen.set(result, (seen.get(result) ?? 0) + 1);
    }),
    { numRuns: runs },
  );
  return seen;
}
