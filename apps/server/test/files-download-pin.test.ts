import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ingestFile, LocalBackend, Repository } from "@bulwark/repository";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RestorePointFiles } from "../src/files/restore-point-files.js";
import { insertOrGetJob } from "../src/jobs/index.js";
import { JobSystem } from "../src/jobs/system.js";
import { initRepository, RepositoryRegistry } from "../src/repositories/registry.js";
import { type ApiHarness, startApiHarness } from "./support/api.js";
import { eventually, REDIS_URL } from "./support/control.js";
import { flushPrefix, jobPrefix, NO_AGENTS } from "./support/job-agent.js";
import { type StoredRestorePoint, storeRestorePoint } from "./support/restore-points.js";

// A download in progress keeps its restore point: its lease holds the point open and renews its
// pin however long it runs, so a real prune keeps the point and a real GC its chunks, and the
// download ends byte for byte. The node's one slot (maxOpen 1) is refused to another point while
// the download runs. Shutdown removes the node's pins; a dead node's pin stops counting when it
// expires. Real HTTP (a paused client), Postgres, BullMQ on Redis, repository and ext4 images; the
// API's and the job system's clock is moved, the files' sweep runs on its real timer.

const run = promisify(execFile);
const secret = { passphrase: "files download pin test" };
const NODE = "files-node-a";

let h: ApiHarness;
let dir: string;
let registry: RepositoryRegistry;
let jobs: JobSystem;
let files: RestorePointFiles;
let prefix: string;
let base: string;
let auth: string;
let repositoryId: string;
let location: string;
let policyId: string;
let older: StoredRestorePoint;
let newerId: string;
/** Random, so that its chunks are the older point's alone. */
const big = randomBytes(24 * 2 ** 20);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "bulwark-files-dl-"));
  prefix = jobPrefix("files-dl");
  h = await startApiHarness("files_dl", {}, async (db, now) => {
    registry = new RepositoryRegistry({ catalog: db.catalog, secret, threads: 1 });
    jobs = await JobSystem.start({
      catalog: db.catalog,
      redisUrl: REDIS_URL,
      dispatcher: NO_AGENTS,
      repositories: registry,
      log: pino({ level: "silent" }),
      settings: { queuePrefix: prefix, resultPollMs: 500 },
      now,
    });
    files = new RestorePointFiles({
      catalog: db.catalog,
      repositories: registry,
      now: () => now().getTime(),
      node: NODE,
      maxOpen: 1,
      sweepMs: 100,
    });
    return { files };
  });
  await jobs.ready();
  await h.app.listen({ host: "127.0.0.1", port: 0 });
  base = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}/api/v1`;
  auth = await h.bearer("HELPDESK");

  const image = async (name: string, content: Buffer, size: string) => {
    const tree = join(dir, `${name}-tree`);
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, "big.bin"), content);
    const path = join(dir, `${name}.img`);
    await run("mke2fs", ["-q", "-F", "-t", "ext4", "-d", tree, path, size]);
    return path;
  };
  location = join(dir, "repo");
  repositoryId = (
    await initRepository({ catalog: h.db.catalog, secret, tenantSlug: "default", name: "main", location })
  ).id;
  older = await storeRestorePoint(h.db.catalog, {
    tenantId: h.tenantId,
    repositoryId,
    location,
    secret,
    image: await image("older", big, "40M"),
    name: "vol-root",
    capturedAt: new Date(h.now().getTime() - 3_600_000),
  });
  // A newer point of the same volume with other data: keepLast 1 removes the older one.
  const repo = await Repository.open(new LocalBackend(location), secret);
  const again = await ingestFile(repo, await image("newer", randomBytes(2 ** 20), "8M"), {
    name: "vol-root-2",
  }).finally(() => repo.close());
  newerId = (
    await h.db.catalog.backup.create({ data: { ...older.row, capturedAt: h.now(), indexRef: again.id } })
  ).id;
  policyId = (
    await h.db.catalog.policy.create({
      data: {
        tenantId: h.tenantId,
        name: "keep-one",
        scheduleCron: "0 22 * * *",
        timezone: "UTC",
        retention: { keepLast: 1 },
        volumeSelector: { kind: "all-fixed" },
        repositoryId,
      },
    })
  ).id;
}, 180_000);

afterAll(async () => {
  await files?.close();
  await jobs?.close({ force: true });
  if (prefix) await flushPrefix(prefix);
  await h?.close();
  await registry?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

let jobN = 0;
async function runJob(kind: "PRUNE" | "GC") {
  const { row } = await insertOrGetJob(h.db.catalog, {
    tenantId: h.tenantId,
    kind,
    idempotencyKey: `files-dl:${kind}:${++jobN}`,
    agentId: kind === "PRUNE" ? older.agentId : null,
    policyId: kind === "PRUNE" ? policyId : null,
    params: kind === "PRUNE" ? { volumeId: older.volumeId, repositoryId } : { repositoryId },
    maxAttempts: 1,
  });
  const queue = kind === "PRUNE" ? "prune" : "gc";
  await jobs.ctx.queues.queue(queue).add(queue, { jobId: row.id }, { jobId: row.id });
  let state = "";
  await eventually(async () => {
    state = (await h.db.catalog.job.findUniqueOrThrow({ where: { id: row.id } })).state;
    return state === "SUCCEEDED" || state === "FAILED";
  }, 120_000);
  const done = await h.db.catalog.job.findUniqueOrThrow({ where: { id: row.id } });
  expect(done.state, done.errorMessage ?? "").toBe("SUCCEEDED");
  return done.result as {
    pinned?: { id: string }[];
    deleted?: { id: string }[] | number;
  };
}

/** Chunk files as old as GC's grace period allows it to delete, so only liveness keeps them. */
async function ageChunks(): Promise<void> {
  const old = new Date(Date.now() - 3 * 24 * 3_600_000);
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else await utimes(p, old, old);
    }
  };
  await walk(join(location, "chunks"));
}

const pins = (backupId: string) => h.db.catalog.exportPin.findMany({ where: { backupId } });
const get = (url: string) =>
  h.app.inject({ method: "GET", url: `/api/v1${url}`, headers: { authorization: auth } });

/** Starts a download over real HTTP and stops reading after its first bytes. */
function startDownload(url: string) {
  const received: Buffer[] = [];
  let res: http.IncomingMessage | undefined;
  const ended = new Promise<void>((resolve, reject) => {
    const req = http.get(`${base}${url}`, { headers: { authorization: auth } }, (r) => {
      res = r;
      r.on("data", (b: Buffer) => {
        received.push(b);
        r.pause();
      });
      r.on("end", resolve);
      r.on("error", reject);
      r.on("aborted", () => reject(new Error("download aborted by the server")));
    });
    req.on("error", reject);
  });
  ended.catch(() => undefined);
  return {
    started: () => eventually(() => received.length > 0),
    statusCode: () => res?.statusCode,
    resume: () => {
      res!.removeAllListeners("data");
      res!.on("data", (b: Buffer) => received.push(b));
      res!.resume();
      return ended.then(() => Buffer.concat(received));
    },
    bytes: () => received.reduce((n, b) => n + b.length, 0),
  };
}

describe("a running download keeps its restore point", { timeout: 300_000 }, () => {
  it("through a real prune and GC, hours after its last request, and finishes byte for byte", async () => {
    const download = startDownload(`/backups/${older.backupId}/files/content?path=/big.bin`);
    await download.started();
    expect(download.statusCode()).toBe(200);
    expect(download.bytes()).toBeLessThan(big.length / 2);
    expect((await pins(older.backupId)).map((p) => p.node)).toEqual([NODE]);

    // The node's only slot is in use: another point is refused, and the download's is not closed.
    const busy = await get(`/backups/${newerId}/volume`);
    expect(busy.statusCode).toBe(503);
    expect(busy.json().error.code).toBe("BULWARK_API_FILES_BUSY");

    // Hours pass with no request: the lease keeps the point, and its pin is renewed past "now".
    h.advance(2 * 3_600_000);
    await eventually(async () => {
      const [pin] = await pins(older.backupId);
      return pin !== undefined && pin.expiresAt.getTime() > h.now().getTime();
    });

    const pruned = await runJob("PRUNE");
    expect(pruned.pinned?.map((p) => p.id)).toEqual([older.backupId]);
    expect(pruned.deleted).toEqual([]);
    await ageChunks();
    const gc = await runJob("GC");
    expect(gc.deleted).toBe(0);

    const body = await download.resume();
    expect(body.length).toBe(big.length);
    expect(body.equals(big)).toBe(true);

    // Ended: the point is no longer held, so the slot goes to the next point and the pin goes.
    await eventually(async () => (await get(`/backups/${newerId}/volume`)).statusCode === 200);
    await eventually(async () => (await pins(older.backupId)).length === 0);
    const after = await runJob("PRUNE");
    expect(after.pinned).toEqual([]);
    expect((after.deleted as { id: string }[]).map((d) => d.id)).toEqual([older.backupId]);
    // The same GC now removes the old point's chunks: only the lease had kept them.
    await ageChunks();
    const reclaimed = await runJob("GC");
    expect(reclaimed.deleted).toBeGreaterThan(0);
  });

  it("a pin of a node that died stops counting at its expiresAt", async () => {
    // Another old point of the volume, pinned by a node that is gone.
    const repo = await Repository.open(new LocalBackend(location), secret);
    const img = join(dir, "dead.img");
    await writeFile(img, randomBytes(2 ** 20));
    const point = await ingestFile(repo, img, { name: "vol-root-dead" }).finally(() => repo.close());
    const orphan = await h.db.catalog.backup.create({
      data: {
        ...older.row,
        capturedAt: new Date(older.row.capturedAt.getTime() - 3_600_000),
        indexRef: point.id,
      },
    });
    await h.db.catalog.exportPin.create({
      data: { backupId: orphan.id, node: "dead-node", expiresAt: new Date(h.now().getTime() + 60_000) },
    });
    const kept = await runJob("PRUNE");
    expect(kept.pinned?.map((p) => p.id)).toEqual([orphan.id]);
    h.advance(61_000);
    const gone = await runJob("PRUNE");
    expect((gone.deleted as { id: string }[]).map((d) => d.id)).toEqual([orphan.id]);
    // The expired row itself is removed by that prune (a live node deletes its own pins).
    expect(await pins(orphan.id)).toEqual([]);
  });

  it("shutdown removes this node's pins and refuses new leases", async () => {
    expect((await get(`/backups/${newerId}/volume`)).statusCode).toBe(200);
    expect(await h.db.catalog.exportPin.count({ where: { node: NODE } })).toBe(1);
    await files.close();
    expect(await h.db.catalog.exportPin.count({ where: { node: NODE } })).toBe(0);
    const refused = await get(`/backups/${newerId}/volume`);
    expect(refused.statusCode).toBe(503);
    expect(refused.json().error.code).toBe("BULWARK_API_FILES_BUSY");
  });
});
