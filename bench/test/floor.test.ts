import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CHUNK = 64 * 1024;
const FLOOR = join(import.meta.dirname, "..", "src", "floor.ts");

/** Runs floor.ts from source as the bench runs it compiled; returns its one-line JSON report. */
function floor(
  image: string,
  out: string,
  mode: string,
): { mode: string; chunks: number; storedBytes: number } {
  const r = spawnSync(process.execPath, ["--conditions=source", "--import", "tsx", FLOOR, image, out, mode], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`floor.ts ${mode} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim());
}

async function filesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (entry.isFile()) found.push(join(entry.parentPath, entry.name));
  return found;
}

describe("ingest floor (floor.ts)", () => {
  let dir: string;
  let image: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bulwark-floor-"));
    image = join(dir, "image.img");
    // Chunks: random A, zeros, sevens B, A again, a hole up to chunk 64, text C, B again: five
    // non-zero chunks, three of them unique, spread over both threads' 4 MiB blocks.
    const a = randomBytes(CHUNK);
    const b = Buffer.alloc(CHUNK, 7);
    const c = Buffer.from("hello world ".repeat(6000)).subarray(0, CHUNK);
    const head = Buffer.concat([a, Buffer.alloc(CHUNK), b, a]);
    const tail = Buffer.concat([c, b]);
    const bytes = Buffer.alloc(70 * CHUNK);
    head.copy(bytes, 0);
    tail.copy(bytes, 64 * CHUNK);
    await writeFile(image, bytes);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("hashes every non-zero chunk and encodes each distinct one once, into one file per thread", async () => {
    const out = join(dir, "packed");
    const report = floor(image, out, "packed");
    expect(report).toMatchObject({ mode: "packed", chunks: 5 });
    const packs = await filesUnder(out);
    expect(packs.length).toBeLessThanOrEqual(2);
    let total = 0;
    for (const p of packs) total += (await stat(p)).size;
    expect(total).toBe(report.storedBytes);
    // The random chunk cannot compress: its blob is at least the chunk, the other two far smaller.
    expect(report.storedBytes).toBeGreaterThan(CHUNK);
    expect(report.storedBytes).toBeLessThan(CHUNK + 4096);
  });

  it("writes one file per distinct blob in the per-blob mode, the same bytes in all", async () => {
    const out = join(dir, "files");
    const report = floor(image, out, "files");
    expect(report).toMatchObject({ mode: "files", chunks: 5 });
    const blobs = await filesUnder(out);
    expect(blobs).toHaveLength(3);
    let total = 0;
    for (const p of blobs) total += (await stat(p)).size;
    expect(total).toBe(report.storedBytes);
  });

  it("refuses a missing mode with a usage line", () => {
    const r = spawnSync(process.execPath, ["--conditions=source", "--import", "tsx", FLOOR, image, dir], {
      encoding: "utf8",
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("usage");
  });
});
