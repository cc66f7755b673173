import { open, statfs } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { dataExtents, dataSpan, parseFilefrag } from "../src/extents.js";
import { ingestFile, LocalBackend, PointReader, Repository } from "../src/index.js";
import { newRepo, PASS, randomImage, readAll, tempDir, track } from "./helpers.js";

const FILEFRAG = `Filesystem type is: ef53
File size of /img is 10485760 (2560 blocks of 4096 bytes)
 ext:     logical_offset:        physical_offset: length:   expected: flags:
   0:        0..     133:    5922816..   5922949:    134:
   1:      136..     137:    5922952..   5922953:      2:
   2:      138..     140:    5922961..   5922963:      3:    5922954:
   3:     1220..    1220:          0..         0:      0:             last,unknown_loc,delalloc
/img: 4 extents found
`;

describe("image extents (ingest skips holes)", () => {
  it("parses filefrag -v -e: every extent, delayed allocation included, neighbours merged", () => {
    expect(parseFilefrag(FILEFRAG)).toEqual([
      [0, 134 * 4096],
      [136 * 4096, 141 * 4096],
      [1220 * 4096, 1221 * 4096],
    ]);
    // filefrag counts physically contiguous extents as one: fewer than it lists is normal.
    expect(parseFilefrag(FILEFRAG.replace("4 extents", "1 extent"))).toHaveLength(3);
    expect(
      parseFilefrag(
        "Filesystem type is: ef53\nFile size of /x is 0 (0 blocks of 4096 bytes)\n/x: 0 extents found\n",
      ),
    ).toEqual([]);
    // A listing that disagrees with its own count, or is not filefrag's, is not trusted.
    expect(parseFilefrag(FILEFRAG.replace("4 extents", "5 extents"))).toBeUndefined();
    expect(parseFilefrag(FILEFRAG.replace("4 extents", "0 extents"))).toBeUndefined();
    expect(parseFilefrag("something else")).toBeUndefined();
  });

  it("dataSpan: from the first to the last chunk that touches data, null for a range in holes", () => {
    const ext: [number, number][] = [
      [10_000, 20_000],
      [200_000, 200_001],
    ];
    const cs = 4096;
    expect(dataSpan(ext, 0, 8192, cs)).toBeNull(); // ends before the first extent
    expect(dataSpan(ext, 0, 65_536, cs)).toEqual({ start: 8192, end: 20_480 });
    expect(dataSpan(ext, 20_480, 196_608, cs)).toBeNull(); // between the extents
    expect(dataSpan(ext, 0, 1 << 20, cs)).toEqual({ start: 8192, end: 200_704 });
    expect(dataSpan(ext, 196_608, 1 << 20, cs)).toEqual({ start: 196_608, end: 200_704 });
    expect(dataSpan(ext, 204_800, 1 << 20, cs)).toBeNull(); // after the last extent
    expect(dataSpan(ext, 12_288, 16_384, cs)).toEqual({ start: 12_288, end: 16_384 }); // inside one
    expect(dataSpan([], 0, 1 << 20, cs)).toBeNull();
  });

  it("ingests a sparse image file byte for byte: data at extent edges, across read blocks, in a short last chunk", async () => {
    const CS = 64 * 1024;
    const { repo, dir } = await newRepo({ chunkSize: CS, fanout: 16 });
    const file = join(await tempDir(), "sparse.img");
    const size = 13 * 1024 * 1024 + 5000; // a last chunk shorter than the chunk size
    const fh = await open(file, "w");
    const writes: [number, Buffer][] = [
      [0, randomImage(4096)], // one 4 KiB block at the start of a chunk
      [CS * 3 + 8192, randomImage(4096)], // in the middle of a chunk
      [4 * 1024 * 1024 - 4096, randomImage(8192)], // across the first 4 MiB read block's end
      [9 * 1024 * 1024 + 12_345, randomImage(100)], // an unaligned write in an otherwise empty block
      [size - 3000, randomImage(3000)], // the short last chunk
    ];
    try {
      await fh.truncate(size);
      for (const [off, b] of writes) await fh.write(b, 0, b.length, off);
    } finally {
      await fh.close();
    }
    const image = Buffer.alloc(size);
    for (const [off, b] of writes) b.copy(image, off);

    // Where the filesystem lists extents exactly (ext4, XFS, btrfs: /tmp on the CI machine), the
    // ingest really skips holes: most of the file is not listed as data.
    const exact = [0xef53, 0x58465342, 0x9123683e].includes((await statfs(file)).type);
    const extents = await dataExtents(file);
    if (exact) {
      expect(extents).toBeDefined();
      const listed = extents!.reduce((n, [a, b]) => n + (b - a), 0);
      expect(listed).toBeLessThan(size / 4);
    }

    const point = await ingestFile(repo, file, { name: "sparse" });
    expect(point.volumeSize).toBe(size);
    // Chunks in holes are zero markers, as if their zeros had been read.
    expect(point.stats.zeroChunks).toBe(Math.ceil(size / CS) - 6); // 6 chunks hold data
    const again = track(await Repository.open(new LocalBackend(dir), PASS, { threads: 2 }));
    const reader = new PointReader(again, await again.resolvePoint(point.id));
    expect((await readAll(reader.stream())).equals(image)).toBe(true);
  });
});
