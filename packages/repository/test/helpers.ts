import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import { type Backend, LocalBackend, Repository } from "../src/index.js";

/** Small scrypt parameters: tests unlock many times; the format is the same. */
export const FAST_SCRYPT = { N: 1024, r: 8, p: 1 };
export const PASS = { passphrase: "correct horse battery staple" };

const dirs: string[] = [];
const repos: Repository[] = [];
afterEach(async () => {
  await Promise.all(repos.splice(0).map((r) => r.close()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

export async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "bulwark-repo-test-"));
  dirs.push(d);
  return d;
}

export function track(repo: Repository): Repository {
  repos.push(repo);
  return repo;
}

export async function newRepo(
  opts: {
    chunkSize?: number;
    fanout?: number;
    backend?: (dir: string) => Backend;
    threads?: number;
    clock?: { now(): number };
  } = {},
): Promise<{ repo: Repository; dir: string; backend: Backend }> {
  const dir = await tempDir();
  const backend = opts.backend ? opts.backend(dir) : new LocalBackend(dir);
  const repo = await Repository.init(backend, PASS, {
    scrypt: FAST_SCRYPT,
    chunkSize: opts.chunkSize ?? 4096,
    fanout: opts.fanout ?? 4,
    threads: opts.threads ?? 2,
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  return { repo: track(repo), dir, backend };
}

/** Deterministic image generators. */
export function randomImage(size: number): Buffer {
  return randomBytes(size);
}

export function zeroHeavyImage(size: number, chunk: number): Buffer {
  const b = Buffer.alloc(size);
  for (let off = 0; off < size; off += chunk * 5)
    randomBytes(Math.min(chunk / 2, size - off)).copy(b, off + 7);
  return b;
}

export function repetitiveImage(size: number): Buffer {
  const pattern = Buffer.from("Bulwark repetitive block content".repeat(32)); // 1 KiB: divides every chunk size
  const b = Buffer.alloc(size);
  for (let off = 0; off < size; off += pattern.length) pattern.copy(b, off);
  return b;
}

export async function* writesOf(
  image: Buffer,
  block: number,
): AsyncIterable<{ offset: number; data: Buffer }> {
  for (let off = 0; off < image.length; off += block)
    yield { offset: off, data: image.subarray(off, off + block) };
}

export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
