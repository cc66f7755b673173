import { execFile } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NbdListener, startNbdListener } from "../src/exports/listener.js";
import { apiServices } from "../src/http/services.js";
import { initRepository, RepositoryRegistry } from "../src/repositories/registry.js";
import { type ApiHarness, startApiHarness } from "./support/api.js";
import { storeRestorePoint } from "./support/restore-points.js";

// Instant access through the REST API: a restore point made with the repository library, served
// by the node's real NBD listener and export manager, read by qemu-img.

const run = promisify(execFile);
const secret = { passphrase: "api exports test" };
const IMAGE_BYTES = 3 * 2 ** 20;

let h: ApiHarness;
let dir: string;
let registry: RepositoryRegistry;
let listener: NbdListener;
let backupId: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "bulwark-api-exports-"));
  h = await startApiHarness("exports", {}, async (db, now) => {
    registry = new RepositoryRegistry({ catalog: db.catalog, secret, threads: 1 });
    listener = await startNbdListener({
      catalog: db.catalog,
      repositories: registry,
      host: "127.0.0.1",
      port: 0,
      log: pino({ level: "silent" }),
      now,
    });
    return apiServices({ catalog: db.catalog, now, exports: listener.exports });
  });
  const location = join(dir, "repo");
  const repoRow = await initRepository({
    catalog: h.db.catalog,
    secret,
    tenantSlug: "default",
    name: "main",
    location,
  });
  const imagePath = join(dir, "disk.img");
  await writeFile(imagePath, randomBytes(IMAGE_BYTES));
  ({ backupId } = await storeRestorePoint(h.db.catalog, {
    tenantId: h.tenantId,
    repositoryId: repoRow.id,
    location,
    secret,
    image: imagePath,
    name: "vol",
    capturedAt: h.now(),
  }));
});

afterAll(async () => {
  await h?.close();
  await listener?.close();
  await registry?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("NBD exports over the REST API", () => {
  it("lets helpdesk open a restore point for instant access, lists it without its name, and closes it; audited", async () => {
    const helpdesk = await h.bearer("HELPDESK");
    const call = (method: "GET" | "POST", url: string, payload?: object) =>
      h.app.inject({ method, url: `/api/v1${url}`, headers: { authorization: helpdesk }, payload });

    const opened = await call("POST", `/backups/${backupId}/exports`, { ttlSeconds: 600 });
    expect(opened.statusCode).toBe(201);
    const exp = opened.json();
    expect(exp).toMatchObject({ backupId, writable: false, size: IMAGE_BYTES });
    expect(exp.uri).toMatch(new RegExp(`^nbd://127\\.0\\.0\\.1:${listener.port}/\\S+$`));
    const name = exp.uri.split("/").pop() as string;

    const { stdout } = await run("qemu-img", ["info", "--output=json", exp.uri]);
    expect(JSON.parse(stdout)["virtual-size"]).toBe(IMAGE_BYTES);

    const list = await call("GET", "/exports");
    expect(list.json().items).toMatchObject([{ id: exp.id, backupId, connections: 0 }]);
    expect(list.body).not.toContain(name);

    expect((await call("POST", `/exports/${exp.id}/close`)).statusCode).toBe(204);
    expect((await call("GET", "/exports")).json().items).toEqual([]);
    const again = await call("POST", `/exports/${exp.id}/close`);
    expect(again.statusCode).toBe(404);
    expect(again.json().error.code).toBe("BULWARK_API_NOT_FOUND");
    await expect(run("qemu-img", ["info", exp.uri])).rejects.toThrow();

    const audit = await h.db.catalog.auditEvent.findMany({
      where: { action: { startsWith: "export.nbd." } },
      orderBy: { id: "asc" },
    });
    expect(audit.map((a) => [a.action, a.actorType, a.targetId])).toEqual([
      ["export.nbd.open", "API_TOKEN", backupId],
      ["export.nbd.close", "API_TOKEN", backupId],
    ]);
    expect(JSON.stringify(audit, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(name);
  });

  it("answers 404 for an unknown restore point and 400 for a bad lifetime", async () => {
    const operator = await h.bearer("OPERATOR");
    const post = (url: string, payload: object) =>
      h.app.inject({ method: "POST", url: `/api/v1${url}`, headers: { authorization: operator }, payload });
    expect((await post(`/backups/${randomUUID()}/exports`, {})).statusCode).toBe(404);
    expect((await post(`/backups/${backupId}/exports`, { ttlSeconds: 10 })).statusCode).toBe(400);
  });
});
