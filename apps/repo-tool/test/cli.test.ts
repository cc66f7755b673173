import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDuration } from "../src/cli.js";

const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url));
/**
 * Each test runs about ten real child processes (Node start, scrypt, worker threads): ≈2 CPU s
 * each, which took 12–16 s of wall time apiece at a load of 30 on two cores.
 */
const LOADED_MACHINE_MS = 600_000;

interface Result {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs the real binary (TypeScript sources through tsx), as a user or the benchmark would. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--conditions=source", "--import", "tsx", MAIN, ...args],
      { encoding: "buffer", maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        resolve({
          code: err ? ((err as { code?: number }).code ?? 1) : 0,
          stdout,
          stderr: stderr.toString(),
        });
      },
    );
  });
}

describe("bulwark-repo end to end", () => {
  let dir: string;
  let repo: string;
  let pw: string;
  let image: Buffer;
  let imagePath: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bulwark-cli-"));
    repo = join(dir, "repo");
    pw = join(dir, "pw");
    await writeFile(pw, "secret passphrase\n");
    // Random, zero and repetitive regions, not a multiple of the chunk size.
    image = Buffer.concat([
      randomBytes(300_000),
      Buffer.alloc(200_000),
      Buffer.alloc(150_000, "abc"),
      randomBytes(1234),
    ]);
    imagePath = join(dir, "disk.img");
    await writeFile(imagePath, image);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(
    "init, put, ls, cat (file and stdout), verify, gc, prune with --json",
    async () => {
      const g = ["--repo", repo, "--passphrase-file", pw];
      const init = await cli([...g, "init", "--json"]);
      expect(init.code, init.stderr).toBe(0);
      expect(JSON.parse(init.stdout.toString())).toMatchObject({ chunkSize: 65536 });

      const put = await cli([...g, "put", imagePath, "--name", "disk", "--json"]);
      expect(put.code, put.stderr).toBe(0);
      const point = JSON.parse(put.stdout.toString());
      expect(point).toMatchObject({ name: "disk", volumeSize: image.length });

      const ls = await cli([...g, "ls", "--json"]);
      expect(JSON.parse(ls.stdout.toString()).points.map((p: { id: string }) => p.id)).toEqual([point.id]);

      const out = join(dir, "restored.img");
      const cat = await cli([...g, "cat", point.id.slice(0, 8), "-o", out]);
      expect(cat.code, cat.stderr).toBe(0);
      expect((await readFile(out)).equals(image)).toBe(true);
      const stdout = await cli([...g, "cat", "latest"]);
      expect(stdout.code, stdout.stderr).toBe(0);
      expect(stdout.stdout.equals(image)).toBe(true);

      // The passphrase can come from the environment instead of a file.
      const verify = await cli(["--repo", repo, "verify", "--read-data", "--json"], {
        BULWARK_REPO_PASSPHRASE: "secret passphrase",
      });
      expect(verify.code, verify.stderr).toBe(0);
      expect(JSON.parse(verify.stdout.toString())).toMatchObject({ ok: true, readData: true });

      const second = await cli([...g, "put", imagePath, "--name", "disk", "--json"]);
      expect(JSON.parse(second.stdout.toString()).stats.newChunks).toBe(0); // fully deduplicated

      const dry = await cli([...g, "prune", "--keep-last", "1", "--dry-run", "--json"]);
      expect(dry.code, dry.stderr).toBe(0);
      const plan = JSON.parse(dry.stdout.toString());
      expect(plan.remove.map((r: { id: string }) => r.id)).toEqual([point.id]);
      expect(JSON.parse((await cli([...g, "ls", "--json"])).stdout.toString()).points).toHaveLength(2);
      const pruned = await cli([...g, "prune", "--keep-last", "1", "--json"]);
      expect(JSON.parse(pruned.stdout.toString()).deleted).toBe(1);

      const gc = await cli([...g, "gc", "--grace", "0", "--json"]);
      expect(gc.code, gc.stderr).toBe(0);
      expect(JSON.parse(gc.stdout.toString())).toMatchObject({ points: 1 });
    },
    LOADED_MACHINE_MS,
  );

  it(
    "fails with the BULWARK code: wrong passphrase, missing key, unknown point, broken repository",
    async () => {
      const wrong = join(dir, "wrong");
      await writeFile(wrong, "nope");
      const bad = await cli(["--repo", repo, "--passphrase-file", wrong, "ls", "--json"]);
      expect(bad.code).not.toBe(0);
      expect(JSON.parse(bad.stdout.toString()).error.code).toBe("BULWARK_REPO_WRONG_KEY");
      expect(bad.stderr).toContain("BULWARK_REPO_WRONG_KEY");

      const nokey = await cli(["--repo", repo, "ls"], { BULWARK_REPO_PASSPHRASE: "" });
      expect(nokey.code).not.toBe(0);
      expect(nokey.stderr).toContain("BULWARK_REPO_NO_KEY");

      const g = ["--repo", repo, "--passphrase-file", join(dir, "pw")];
      const missing = await cli([...g, "cat", "ffffffff"]);
      expect(missing.stderr).toContain("BULWARK_REPO_NOT_FOUND");
      expect(missing.code).not.toBe(0);

      const ls = JSON.parse((await cli([...g, "ls", "--json"])).stdout.toString());
      const { PointReader, Repository, LocalBackend, chunkKey } = await import("@bulwark/repository");
      const r = await Repository.open(new LocalBackend(repo), { passphrase: "secret passphrase" });
      const id = await new PointReader(r, ls.points[0]).tree.chunkId(0);
      await r.close();
      await unlink(join(repo, chunkKey(id)));
      const verify = await cli([...g, "verify", "--json"]);
      expect(verify.code).not.toBe(0);
      const report = JSON.parse(verify.stdout.toString());
      expect(report.error.code).toBe("BULWARK_REPO_VERIFY_FAILED");
      expect(report.brokenPoints).toEqual([ls.points[0].id]);
      const cat = await cli([...g, "cat", "latest", "-o", join(dir, "x.img")]);
      expect(cat.code).not.toBe(0);
      expect(cat.stderr).toContain("BULWARK_REPO_CHUNK_MISSING");
    },
    LOADED_MACHINE_MS,
  );

  it("parses durations", () => {
    expect(parseDuration("24h")).toBe(86_400_000);
    expect(parseDuration("0")).toBe(0);
    expect(parseDuration("90s")).toBe(90_000);
    expect(() => parseDuration("soon")).toThrow(/duration/);
  });
});
