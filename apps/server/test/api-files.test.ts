import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RestorePointFiles } from "../src/files/restore-point-files.js";
import { initRepository, RepositoryRegistry } from "../src/repositories/registry.js";
import { type ApiHarness, startApiHarness } from "./support/api.js";
import { storeRestorePoint } from "./support/restore-points.js";

// File-level restore through the REST API: an ext4 image built by mke2fs -d from a real tree,
// stored with the repository library, browsed and downloaded through the real routes, compared
// with the source tree byte for byte.

const run = promisify(execFile);
const secret = { passphrase: "api files test" };

let h: ApiHarness;
let dir: string;
let tree: string;
let registry: RepositoryRegistry;
let backupId: string;
let deletingId: string;
let helpdesk: string;
const big = randomBytes(3 * 2 ** 20 + 123);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "bulwark-api-files-"));
  tree = join(dir, "tree");
  await mkdir(join(tree, "home", "anna", "Dokumente"), { recursive: true });
  await writeFile(join(tree, "home", "anna", "Dokumente", "Lebenslauf é.txt"), "Anna, Köln\n");
  await writeFile(join(tree, "home", "anna", "photo.bin"), big);
  await writeFile(join(tree, "README"), "top level\n");
  await symlink("anna/photo.bin", join(tree, "home", "latest"));
  const image = join(dir, "vol.img");
  await run("mke2fs", ["-q", "-F", "-t", "ext4", "-d", tree, image, "16M"]);

  h = await startApiHarness("files", {}, async (db) => {
    registry = new RepositoryRegistry({ catalog: db.catalog, secret, threads: 1 });
    return { files: new RestorePointFiles({ catalog: db.catalog, repositories: registry }) };
  });
  const location = join(dir, "repo");
  const repoRow = await initRepository({
    catalog: h.db.catalog,
    secret,
    tenantSlug: "default",
    name: "main",
    location,
  });
  const stored = await storeRestorePoint(h.db.catalog, {
    tenantId: h.tenantId,
    repositoryId: repoRow.id,
    location,
    secret,
    image,
    name: "vol-root",
  });
  backupId = stored.backupId;
  deletingId = (
    await h.db.catalog.backup.create({
      data: { ...stored.row, indexRef: `${stored.indexRef}-gone`, status: "DELETING" },
    })
  ).id;
  helpdesk = await h.bearer("HELPDESK");
}, 180_000);

afterAll(async () => {
  await h?.close();
  await registry?.close();
  await rm(dir, { recursive: true, force: true });
});

const get = (url: string, auth = helpdesk) =>
  h.app.inject({ method: "GET", url, headers: { authorization: auth } });
const q = (s: string) => encodeURIComponent(s);

describe("file-level restore over REST", { timeout: 120_000 }, () => {
  it("shows the volume layout: one ext4 filesystem without a partition table", async () => {
    const res = await get(`/api/v1/backups/${backupId}/volume`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      table: null,
      partitions: [expect.objectContaining({ number: 0, filesystem: "ext4", offset: 0 })],
    });
  });

  it("lists directories, stats files and reads symlink targets", async () => {
    const root = await get(`/api/v1/backups/${backupId}/files?path=/`);
    expect(root.statusCode).toBe(200);
    const body = root.json();
    expect(body.filesystem).toBe("ext4");
    expect(body.entry.type).toBe("directory");
    expect(body.entries.map((e: { name: string }) => e.name).sort()).toEqual([
      "README",
      "home",
      "lost+found",
    ]);

    const home = (await get(`/api/v1/backups/${backupId}/files?path=/home`)).json();
    const byName = Object.fromEntries(home.entries.map((e: { name: string }) => [e.name, e]));
    expect(byName.anna.type).toBe("directory");
    expect(byName.latest.type).toBe("symlink");

    const link = (await get(`/api/v1/backups/${backupId}/files?path=/home/latest`)).json();
    expect(link.linkTarget).toBe("anna/photo.bin");
    expect(link.entries).toBeNull();

    const photo = (await get(`/api/v1/backups/${backupId}/files?path=/home/anna/photo.bin`)).json();
    expect(photo.entry).toMatchObject({ type: "file", size: big.length });
  });

  it("downloads a file byte for byte, with a non-ASCII name, and audits it", async () => {
    const res = await get(`/api/v1/backups/${backupId}/files/content?path=${q("/home/anna/photo.bin")}`);
    expect(res.statusCode).toBe(200);
    expect(res.rawPayload.equals(big)).toBe(true);
    expect(res.headers["content-disposition"]).toContain('filename="photo.bin"');

    const cv = await get(
      `/api/v1/backups/${backupId}/files/content?path=${q("/home/anna/Dokumente/Lebenslauf é.txt")}`,
    );
    expect(cv.statusCode).toBe(200);
    expect(cv.body).toBe("Anna, Köln\n");
    expect(cv.headers["content-disposition"]).toContain("filename*=UTF-8''Lebenslauf%20%C3%A9.txt");

    const rows = await h.db.catalog.auditEvent.findMany({ where: { action: "restore.file.download" } });
    expect(rows.map((r) => (r.details as { path: string }).path).sort()).toEqual([
      "/home/anna/Dokumente/Lebenslauf é.txt",
      "/home/anna/photo.bin",
    ]);
    expect(rows.every((r) => r.targetId === backupId && r.outcome === "SUCCESS")).toBe(true);
  });

  it("streams a directory as tar that GNU tar extracts to the source tree", async () => {
    const res = await get(`/api/v1/backups/${backupId}/files/archive?path=/home&format=tar`);
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toContain("application/x-tar");
    const out = join(dir, "untar");
    await mkdir(out);
    await writeFile(join(dir, "home.tar"), res.rawPayload);
    await run("tar", ["-xf", join(dir, "home.tar"), "-C", out]);
    const extracted = await readFile(join(out, "home", "anna", "photo.bin")).catch(() =>
      readFile(join(out, "anna", "photo.bin")),
    );
    expect(extracted.equals(big)).toBe(true);
    const audit = await h.db.catalog.auditEvent.findMany({ where: { action: "restore.directory.download" } });
    expect(audit).toHaveLength(1);
  });

  it("finds files by glob and by substring", async () => {
    const glob = (await get(`/api/v1/backups/${backupId}/files/search?pattern=${q("*.bin")}`)).json();
    expect(glob.matches.map((m: { path: string }) => m.path)).toEqual(["/home/anna/photo.bin"]);
    const part = (await get(`/api/v1/backups/${backupId}/files/search?pattern=lebenslauf`)).json();
    expect(part.matches.map((m: { name: string }) => m.name)).toEqual(["Lebenslauf é.txt"]);
    expect(part.truncated).toBe(false);
  });

  it("answers missing paths, directories as files, deleted points and bad input with clear codes", async () => {
    const missing = await get(`/api/v1/backups/${backupId}/files?path=/nope`);
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.code).toBe("BULWARK_FS_NOT_FOUND");

    const dirAsFile = await get(`/api/v1/backups/${backupId}/files/content?path=/home`);
    expect(dirAsFile.statusCode).toBe(400);
    expect(dirAsFile.json().error.code).toBe("BULWARK_FS_IS_A_DIRECTORY");

    const deleting = await get(`/api/v1/backups/${deletingId}/files?path=/`);
    expect(deleting.statusCode).toBe(409);
    expect(deleting.json().error.code).toBe("BULWARK_API_INVALID_STATE");

    const relative = await get(`/api/v1/backups/${backupId}/files?path=home`);
    expect(relative.statusCode).toBe(400);

    const noPartition = await get(`/api/v1/backups/${backupId}/files?path=/&partition=3`);
    expect(noPartition.statusCode).toBe(404);
  });

  it("keeps file contents from auditors and strangers", async () => {
    const auditor = await h.bearer("AUDITOR");
    expect((await get(`/api/v1/backups/${backupId}/files?path=/`, auditor)).statusCode).toBe(403);
    expect((await get(`/api/v1/backups/${backupId}/files/content?path=/README`, auditor)).statusCode).toBe(
      403,
    );
    const anonymous = await h.app.inject({ method: "GET", url: `/api/v1/backups/${backupId}/files?path=/` });
    expect(anonymous.statusCode).toBe(401);
  });
});
