import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ingestFile, LocalBackend, Repository } from "@bulwark/repository";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportRestorePoint, isLoopback, parseListen } from "../src/nbd.js";

// `bulwark-repo nbd` and `bulwark-repo export` as a user runs them (the real binary through tsx),
// read by real NBD clients (qemu-img, qemu-io, nbdinfo) and compared byte for byte.

const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url));
const run = promisify(execFile);
const PASSPHRASE = "nbd test passphrase";

let dir: string;
let repoDir: string;
let pw: string;
let image: Buffer;
let pointId: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "bulwark-repo-nbd-"));
  repoDir = join(dir, "repo");
  pw = join(dir, "pw");
  await writeFile(pw, `${PASSPHRASE}\n`);
  // ~24 MiB: random and zero regions, a repeated pattern, a size that is no multiple of the chunk
  // (but whole 512-byte sectors, as every real volume is; docs/nbd.md, "Export size").
  image = Buffer.concat([
    randomBytes(6 * 2 ** 20),
    Buffer.alloc(7 * 2 ** 20),
    Buffer.alloc(3 * 2 ** 20, "bulwark"),
    randomBytes(5 * 2 ** 20),
    Buffer.alloc(3 * 2 ** 20 + 9 * 512),
  ]);
  const imagePath = join(dir, "disk.img");
  await writeFile(imagePath, image);
  const repo = await Repository.init(
    new LocalBackend(repoDir),
    { passphrase: PASSPHRASE },
    { chunkSize: 65536 },
  );
  try {
    pointId = (await ingestFile(repo, imagePath, { name: "disk" })).id;
  } finally {
    await repo.close();
  }
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const globals = () => ["--repo", repoDir, "--passphrase-file", pw];

/** Starts `bulwark-repo nbd` and waits for its JSON line with the URI. */
async function serve(
  extra: string[],
): Promise<{ child: ChildProcess; uri: string; stderr: () => string; exited: Promise<number> }> {
  const child = spawn(
    process.execPath,
    [
      "--conditions=source",
      "--import",
      "tsx",
      MAIN,
      ...globals(),
      "--json",
      "nbd",
      pointId,
      "--listen",
      "127.0.0.1:0",
      ...extra,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stderr!.on("data", (d) => {
    err += d;
  });
  const exited = new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? -1)));
  const uri = await new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (d) => {
      out += d;
      try {
        resolve(JSON.parse(out).uri);
      } catch {
        // not complete yet
      }
    });
    void exited.then((code) => reject(new Error(`bulwark-repo nbd exited ${code}: ${err}`)));
  });
  return { child, uri, stderr: () => err, exited };
}

async function catPoint(): Promise<Buffer> {
  const out = join(dir, `cat-${randomBytes(4).toString("hex")}.img`);
  await run(process.execPath, [
    "--conditions=source",
    "--import",
    "tsx",
    MAIN,
    ...globals(),
    "cat",
    pointId,
    "-o",
    out,
  ]);
  return readFile(out);
}

// Real child processes (tsx, qemu-img, qemu-io): generous time on a loaded, shared machine.
describe("bulwark-repo nbd", { timeout: 180_000 }, () => {
  it("serves a restore point read-only: qemu-img info, nbdinfo, and a byte-exact qemu-img convert", async () => {
    const s = await serve([]);
    try {
      expect(s.uri).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/[A-Za-z0-9_-]{43}$/);
      const info = JSON.parse((await run("qemu-img", ["info", "--output=json", s.uri])).stdout);
      expect(info["virtual-size"]).toBe(image.length);
      const nbdinfo = JSON.parse((await run("nbdinfo", ["--json", s.uri])).stdout);
      expect(nbdinfo.exports[0]["export-size"]).toBe(image.length);
      expect(nbdinfo.exports[0].is_read_only).toBe(true);
      const out = join(dir, "served.raw");
      await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", s.uri, out]);
      expect((await readFile(out)).equals(image)).toBe(true);
    } finally {
      s.child.kill("SIGTERM");
    }
    expect(await s.exited).toBe(0);
    expect(s.stderr()).toContain("stopped");
  });

  it("--writable: qemu-io's writes are read back, the restore point stays unchanged", async () => {
    const s = await serve(["--writable"]);
    try {
      await run("qemu-io", [
        "-f",
        "raw",
        "-c",
        "write -P 0xab 0 64k",
        "-c",
        "write -P 0xcd 10000000 5000",
        s.uri,
      ]);
      const { stdout } = await run("qemu-io", [
        "-f",
        "raw",
        "-c",
        "read -P 0xab 0 64k",
        "-c",
        "read -P 0xcd 10000000 5000",
        s.uri,
      ]);
      expect(stdout).not.toMatch(/fail|mismatch/i);
      const out = join(dir, "written.raw");
      await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", s.uri, out]);
      const want = Buffer.from(image);
      want.fill(0xab, 0, 65536);
      want.fill(0xcd, 10_000_000, 10_005_000);
      expect((await readFile(out)).equals(want)).toBe(true);
    } finally {
      s.child.kill("SIGTERM");
    }
    expect(await s.exited).toBe(0);
    expect((await catPoint()).equals(image)).toBe(true);
    const verify = await run(process.execPath, [
      "--conditions=source",
      "--import",
      "tsx",
      MAIN,
      ...globals(),
      "verify",
      "--read-data",
      "--json",
    ]);
    expect(JSON.parse(verify.stdout).ok).toBe(true);
  });

  it("--ttl: the export expires, its client is cut off and the command ends by itself", async () => {
    const s = await serve(["--ttl", "3s"]);
    // qemu-io holds its connection open while it waits for more commands on stdin.
    const client = spawn("qemu-io", ["-f", "raw", "-r", s.uri], { stdio: ["pipe", "pipe", "pipe"] });
    const clientExit = new Promise<void>((resolve) => client.once("exit", () => resolve()));
    client.stdin!.write("read 0 4k\n");
    expect(await s.exited).toBe(0);
    expect(s.stderr()).toContain("the export expired");
    client.stdin!.end("quit\n");
    await clientExit;
    await expect(run("qemu-img", ["info", s.uri])).rejects.toThrow();
  });

  it("rejects a bad --listen", async () => {
    expect(() => parseListen("localhost")).toThrow(/HOST:PORT/);
    expect(() => parseListen("127.0.0.1:70000")).toThrow(/HOST:PORT/);
    expect(parseListen("[::1]:10809")).toEqual({ host: "::1", port: 10809 });
    expect([
      isLoopback("127.0.0.1"),
      isLoopback("127.1.2.3"),
      isLoopback("::1"),
      isLoopback("0.0.0.0"),
    ]).toEqual([true, true, true, false]);
  });
});

describe("bulwark-repo export", { timeout: 180_000 }, () => {
  for (const format of ["raw", "qcow2", "vhdx"] as const) {
    it(`--format ${format} converts back to the same raw bytes`, async () => {
      const out = join(dir, `export.${format}`);
      const r = await run(process.execPath, [
        "--conditions=source",
        "--import",
        "tsx",
        MAIN,
        ...globals(),
        "--json",
        "export",
        pointId,
        "--format",
        format,
        "--out",
        out,
      ]);
      expect(JSON.parse(r.stdout)).toMatchObject({ id: pointId, format, bytes: image.length });
      const info = JSON.parse((await run("qemu-img", ["info", "--output=json", out])).stdout);
      expect(info.format).toBe(format);
      const back = join(dir, `back-${format}.raw`);
      await run("qemu-img", ["convert", "-f", format, "-O", "raw", out, back]);
      // vhdx rounds the virtual size up to its block granularity; the image must be a prefix of zeros after.
      const bytes = await readFile(back);
      expect(bytes.subarray(0, image.length).equals(image)).toBe(true);
      expect(bytes.subarray(image.length).equals(Buffer.alloc(bytes.length - image.length))).toBe(true);
    });
  }

  it("reports qemu-img failures with BULWARK_NBD_CONVERT_FAILED and refuses unknown formats", async () => {
    const repo = await Repository.open(new LocalBackend(repoDir), { passphrase: PASSPHRASE });
    try {
      await expect(
        exportRestorePoint(repo, pointId, { format: "raw", out: join(dir, "no", "such", "dir.raw") }),
      ).rejects.toMatchObject({ code: "BULWARK_NBD_CONVERT_FAILED" });
      await expect(
        exportRestorePoint(repo, pointId, {
          format: "raw",
          out: join(dir, "x.raw"),
          qemuImg: join(dir, "no-qemu-img"),
        }),
      ).rejects.toMatchObject({
        code: "BULWARK_NBD_CONVERT_FAILED",
        message: expect.stringContaining("qemu-utils"),
      });
      await expect(
        exportRestorePoint(repo, pointId, { format: "vpc", out: join(dir, "x.vhd") }),
      ).rejects.toMatchObject({
        code: "BULWARK_NBD_BAD_REQUEST",
      });
    } finally {
      await repo.close();
    }
    const cli = await run(process.execPath, [
      "--conditions=source",
      "--import",
      "tsx",
      MAIN,
      ...globals(),
      "export",
      pointId,
      "--format",
      "vmdk",
      "--out",
      join(dir, "x"),
    ]).catch((e: { code: number; stderr: string }) => e);
    expect((cli as { code: number }).code).not.toBe(0);
    expect((cli as { stderr: string }).stderr).toContain("BULWARK_REPO_INVALID_ARGUMENT");
  });
});
