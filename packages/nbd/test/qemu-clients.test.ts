import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdServer } from "../src/index.js";

// Real NBD clients from Debian (qemu-utils, libnbd-bin) against the server, over a file-backed source.

const run = promisify(execFile);
const SIZE = 12 * 2 ** 20 + 512; // whole sectors, but not a multiple of 4 KiB nor of 64 KiB

let dir: string;
let imagePath: string;
let image: Buffer;
let server: NbdServer;
let close: () => Promise<void>;
let fileSource: { size: number; read: (o: number, l: number) => Promise<Buffer> };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "bulwark-nbd-qemu-"));
  image = Buffer.alloc(SIZE);
  randomBytes(3 * 2 ** 20).copy(image, 0);
  randomBytes(2 * 2 ** 20).copy(image, 8 * 2 ** 20); // zero regions in between and at the end
  imagePath = join(dir, "image.raw");
  await writeFile(imagePath, image);
  const fh = await open(imagePath, "r");
  fileSource = {
    size: SIZE,
    read: async (o: number, l: number) => {
      const b = Buffer.alloc(l);
      await fh.read(b, 0, l, o);
      return b;
    },
  };
  server = new NbdServer({ port: 0, tempDir: dir });
  await server.listen();
  close = async () => {
    await server.close();
    await fh.close();
  };
});
afterAll(async () => {
  await close?.();
  await rm(dir, { recursive: true, force: true });
});

const source = () => fileSource;
const later = () => new Date(Date.now() + 600_000);
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

// Real child processes (tsx, qemu-img, qemu-io): generous time on a loaded, shared machine.
describe("real NBD clients", { timeout: 180_000 }, () => {
  it("qemu-img info reports the export's size", async () => {
    const e = await server.addExport({ source: source(), expiresAt: later() });
    const { stdout } = await run("qemu-img", ["info", "--output=json", e.uri]);
    expect(JSON.parse(stdout)["virtual-size"]).toBe(SIZE);
  });

  it("nbdinfo reports the size and that the export is read-only", async () => {
    const e = await server.addExport({ source: source(), expiresAt: later() });
    const { stdout } = await run("nbdinfo", ["--json", e.uri]);
    const info = JSON.parse(stdout);
    expect(info.exports[0]["export-size"]).toBe(SIZE);
    expect(info.exports[0].is_read_only).toBe(true);
  });

  it("qemu-img convert -O raw copies the image byte for byte", async () => {
    const e = await server.addExport({ source: source(), expiresAt: later() });
    const out = join(dir, "copy.raw");
    await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", e.uri, out]);
    expect((await readFile(out)).equals(image)).toBe(true);
  });

  it("pads a source that is not whole sectors with zeros, so qemu can read its last sector", async () => {
    const odd = 3 * 2 ** 20 + 4321;
    const e = await server.addExport({
      source: { size: odd, read: (o, l) => fileSource.read(o, l) },
      expiresAt: later(),
    });
    const padded = Math.ceil(odd / 512) * 512;
    expect(e.size).toBe(padded);
    const out = join(dir, "odd.raw");
    await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", e.uri, out]);
    const bytes = await readFile(out);
    expect(bytes.length).toBe(padded);
    expect(bytes.subarray(0, odd).equals(image.subarray(0, odd))).toBe(true);
    expect(bytes.subarray(odd).equals(Buffer.alloc(padded - odd))).toBe(true);
  });

  it("qemu-io writes to a writable export's overlay; the source file is unchanged", async () => {
    const before = sha(await readFile(imagePath));
    const e = await server.addExport({ source: source(), expiresAt: later(), writable: true });
    await run("qemu-io", ["-f", "raw", "-c", "write -P 0xab 0 64k", "-c", "write -z 1M 64k", e.uri]);
    const { stdout } = await run("qemu-io", [
      "-f",
      "raw",
      "-c",
      "read -P 0xab 0 64k",
      "-c",
      "read -P 0 1M 64k",
      e.uri,
    ]);
    expect(stdout).not.toMatch(/fail|mismatch/i);
    const out = join(dir, "written.raw");
    await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", e.uri, out]);
    const want = Buffer.from(image);
    want.fill(0xab, 0, 65536);
    want.fill(0, 2 ** 20, 2 ** 20 + 65536);
    expect((await readFile(out)).equals(want)).toBe(true);
    expect(sha(await readFile(imagePath))).toBe(before);
  });

  it("qemu-io cannot write to a read-only export", async () => {
    const e = await server.addExport({ source: source(), expiresAt: later() });
    const result = await run("qemu-io", ["-f", "raw", "-c", "write -P 0xcd 0 4k", e.uri]).then(
      (r) => `${r.stdout}${r.stderr}`,
      (err: { stdout: string; stderr: string }) => `${err.stdout}${err.stderr}`,
    );
    expect(result).toMatch(/read-only|permission|not permitted/i);
    const { stdout } = await run("qemu-io", ["-f", "raw", "-r", "-c", "read -v 0 16", e.uri]);
    const firstBytes = [...image.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    expect(stdout).toContain(`00000000:  ${firstBytes}`);
  });
});
