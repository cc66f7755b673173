import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildReadPlan, type ChunkRun, readOffsets } from "../src/index.js";

const KiB = 1024;
const MiB = 1024 * KiB;

function indices(runs: ChunkRun[]): number[] {
  return runs.flatMap((r) => Array.from({ length: r.count }, (_, i) => r.first + i));
}

describe("read plan", () => {
  it("reads everything without a bitmap, with a short last chunk", () => {
    const plan = buildReadPlan({ volumeSize: 10 * MiB + 4 * KiB, chunkSize: MiB });
    expect(plan.method).toBe("full+hash");
    expect(plan.chunkCount).toBe(11);
    expect(plan.read).toEqual([{ first: 0, count: 11 }]);
    expect(plan.bytesToRead).toBe(10 * MiB + 4 * KiB);
    const offsets = [...readOffsets(plan)];
    expect(offsets.at(-1)).toEqual({ index: 10, offset: 10 * MiB, length: 4 * KiB });
  });

  it("skips only chunks with no allocated byte", () => {
    const plan = buildReadPlan({
      volumeSize: 8 * MiB,
      chunkSize: MiB,
      used: [
        { offset: 0, length: 4 * KiB }, // chunk 0
        { offset: 3 * MiB - 1, length: 2 }, // straddles chunks 2 and 3
        { offset: 7 * MiB + 100, length: 1 }, // chunk 7
      ],
    });
    expect(plan.method).toBe("bitmap+hash");
    expect(indices(plan.read)).toEqual([0, 2, 3, 7]);
    expect(indices(plan.unused)).toEqual([1, 4, 5, 6]);
    expect(plan.bytesToRead).toBe(4 * MiB);
  });

  it("with CBT reads changed chunks in use, carries unchanged ones, re-reads previously unused ones", () => {
    const plan = buildReadPlan({
      volumeSize: 8 * MiB,
      chunkSize: MiB,
      used: [{ offset: 0, length: 6 * MiB }],
      changed: [
        { offset: 2 * MiB, length: 64 * KiB },
        { offset: 6 * MiB, length: MiB }, // changed but now free: recorded unused, not read
      ],
      previousUnused: [{ first: 4, count: 1 }],
    });
    expect(plan.method).toBe("cbt");
    expect(indices(plan.read)).toEqual([2, 4]);
    expect(indices(plan.carried)).toEqual([0, 1, 3, 5]);
    expect(indices(plan.unused)).toEqual([6, 7]);
  });

  it("refuses chunk sizes that are not multiples of 4 KiB and ranges outside the volume", () => {
    expect(() => buildReadPlan({ volumeSize: MiB, chunkSize: 1000 })).toThrow(/multiple of 4096/);
    expect(() =>
      buildReadPlan({ volumeSize: MiB, chunkSize: 4096, used: [{ offset: MiB, length: 1 }] }),
    ).toThrow(/outside/);
  });

  it("property: chunks partition the volume, and every used or changed byte is read or carried correctly", () => {
    const rangeArb = (size: number) =>
      fc
        .tuple(fc.integer({ min: 0, max: size - 1 }), fc.integer({ min: 1, max: size }))
        .map(([offset, length]) => ({ offset, length: Math.min(length, size - offset) }));
    fc.assert(
      fc.property(
        fc
          .tuple(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 4 }), fc.nat())
          .chain(([chunks, k, trim]) => {
            const chunkSize = 4 * KiB * k;
            const size = chunks * chunkSize - (trim % chunkSize);
            return fc.record({
              size: fc.constant(size),
              chunkSize: fc.constant(chunkSize),
              used: fc.option(fc.array(rangeArb(size), { maxLength: 8 }), { nil: undefined }),
              changed: fc.option(fc.array(rangeArb(size), { maxLength: 8 }), { nil: undefined }),
            });
          }),
        ({ size, chunkSize, used, changed }) => {
          const plan = buildReadPlan({ volumeSize: size, chunkSize, used, changed });
          const read = new Set(indices(plan.read));
          const unused = new Set(indices(plan.unused));
          const carried = new Set(indices(plan.carried));
          for (let i = 0; i < plan.chunkCount; i++) {
            expect([read.has(i), unused.has(i), carried.has(i)].filter(Boolean)).toHaveLength(1);
          }
          const chunkOf = (offset: number) => Math.floor(offset / chunkSize);
          for (const r of used ?? []) {
            for (let i = chunkOf(r.offset); i <= chunkOf(r.offset + r.length - 1); i++)
              expect(unused.has(i)).toBe(false);
          }
          for (const r of changed ?? []) {
            for (let i = chunkOf(r.offset); i <= chunkOf(r.offset + r.length - 1); i++)
              expect(carried.has(i)).toBe(false);
          }
          if (!used) expect(unused.size).toBe(0);
          if (!changed) expect(carried.size).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });
});
