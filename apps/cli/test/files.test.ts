// `files volume|ls|find|get` against a real local HTTP server answering the file-restore routes as
// the API does (packages/api/src/files.ts): tables, query parameters, downloads streamed to disk
// through a temporary file, refusal to overwrite, and a short answer detected by its Content-Length.
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DownloadStalledError, downloadMeter } from "../src/commands/files.js";
import { run } from "../src/run.js";

const BACKUP_ID = randomUUID();
const CONTENT = randomBytes(200_000);
const ARCHIVE = randomBytes(5000);
const MTIME = "2026-11-01T10:00:00.000Z";

function entry(path: string, type: "file" | "directory" | "symlink", size: number) {
  return {
    name: path === "/" ? "" : path.slice(path.lastIndexOf("/") + 1),
    path,
    type,
    size,
    mtime: MTIME,
    mode: type === "directory" ? 0o40755 : type === "symlink" ? 0o120777 : 0o100644,
    id: 12,
    links: 1,
  };
}

const TREE: Record<string, ReturnType<typeof entry>> = {
  "/": entry("/", "directory", 4096),
  "/etc": entry("/etc", "directory", 4096),
  "/etc/big.bin": entry("/etc/big.bin", "file", CONTENT.length),
  "/etc/short.bin": entry("/etc/short.bin", "file", 1000),
  "/etc/link": entry("/etc/link", "symlink", 12),
};

describe("files volume, ls, find and get", () => {
  let http: Server;
  let base: string;
  const dir = mkdtempSync(join(tmpdir(), "bulwark-cli-files-"));
  const requests: string[] = [];

  beforeAll(async () => {
    http = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      requests.push(`${url.pathname}${url.search}`);
      const json = (status: number, value: unknown) =>
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
      const prefix = `/api/v1/backups/${BACKUP_ID}`;
      const path = url.searchParams.get("path") ?? "/";
      if (url.pathname === `${prefix}/volume`) {
        return json(200, {
          table: "gpt",
          partitions: [
            {
              number: 1,
              offset: 1048576,
              length: 8388608,
              type: "0FC63DAF",
              filesystem: "ext4",
              name: "root",
            },
          ],
        });
      }
      if (url.pathname === `${prefix}/files`) {
        const e = TREE[path];
        if (!e) return json(404, { error: { code: "BULWARK_FS_NOT_FOUND", message: `no ${path}` } });
        const children =
          e.type === "directory"
            ? Object.values(TREE).filter(
                (c) => c.path !== "/" && c.path.slice(0, c.path.lastIndexOf("/") || 1) === path,
              )
            : null;
        return json(200, {
          partition: 1,
          filesystem: "ext4",
          entry: e,
          entries: children,
          linkTarget: e.type === "symlink" ? "/etc/big.bin" : null,
        });
      }
      if (url.pathname === `${prefix}/files/search`) {
        return json(200, { partition: 1, matches: [TREE["/etc/big.bin"]], truncated: true });
      }
      if (url.pathname === `${prefix}/files/content`) {
        if (path === "/etc/short.bin") {
          // Announces 1000 bytes, sends 10 and ends the connection: a broken download.
          res.writeHead(200, { "content-type": "application/octet-stream", "content-length": "1000" });
          res.write(Buffer.alloc(10));
          return res.destroy();
        }
        return res
          .writeHead(200, {
            "content-type": "application/octet-stream",
            "content-length": String(CONTENT.length),
          })
          .end(CONTENT);
      }
      if (url.pathname === `${prefix}/files/archive`) {
        // Archives are streamed without a length, as the server does.
        res.writeHead(200, { "content-type": "application/x-tar" });
        res.write(ARCHIVE.subarray(0, 1000));
        return setTimeout(() => res.end(ARCHIVE.subarray(1000)), 20);
      }
      return json(404, { error: { code: "BULWARK_GENERAL_NOT_FOUND", message: "no route" } });
    });
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    http.closeAllConnections();
    await new Promise((r) => http.close(r));
  });

  async function cli(argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await run(["--server", base, ...argv], {
      out: (t) => out.push(t),
      err: (t) => err.push(t),
      env: { XDG_CONFIG_HOME: dir, BULWARK_TOKEN: "bwk_test_token", TZ: "UTC" },
    });
    return { code, out: out.join("\n"), err: err.join("\n") };
  }

  it("shows the partitions of a restore point", async () => {
    const res = await cli(["files", "volume", BACKUP_ID]);
    expect(res.err).toBe("");
    expect(res.code).toBe(0);
    expect(res.out.split("\n")[0]).toBe("partition table: gpt");
    expect(res.out).toMatch(/^\s+1\s+1048576\s+8\.00 MiB\s+ext4\s+0FC63DAF\s+root$/m);
  });

  it("lists a directory with sizes in IEC units and symlink targets", async () => {
    const res = await cli(["files", "ls", BACKUP_ID, "etc", "--partition", "1"]);
    expect(res.err).toBe("");
    expect(res.code).toBe(0);
    const lines = res.out.split("\n");
    expect(lines[0]).toMatch(/^TYPE\s+SIZE\s+MODIFIED\s+NAME$/);
    expect(res.out).toMatch(/^file\s+195 KiB\s+\S+ \S+\s+big\.bin$/m);
    expect(res.out).toMatch(/^link\s+12 B\s+\S+ \S+\s+link -> \/etc\/big\.bin$/m);
    expect(requests).toContain(`/api/v1/backups/${BACKUP_ID}/files?path=%2Fetc&partition=1`);
    const json = JSON.parse((await cli(["files", "ls", BACKUP_ID, "/etc", "--json"])).out) as {
      entries: { name: string }[];
    };
    expect(json.entries.map((e) => e.name).sort()).toEqual(["big.bin", "link", "short.bin"]);
    const bad = await cli(["files", "ls", BACKUP_ID, "/", "--partition", "x"]);
    expect(bad.code).toBe(2);
    const missing = await cli(["files", "ls", BACKUP_ID, "/nope"]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("BULWARK_FS_NOT_FOUND");
  });

  it("finds by name with the search options passed through, and says when it stopped early", async () => {
    const res = await cli([
      "files",
      "find",
      BACKUP_ID,
      "*.bin",
      "--under",
      "/etc",
      "--case-sensitive",
      "--limit",
      "1",
    ]);
    expect(res.code).toBe(0);
    expect(res.out).toMatch(/^file\s+195 KiB\s+\S+ \S+\s+\/etc\/big\.bin$/m);
    expect(res.out).toContain("stopped at 1 matches");
    expect(requests.at(-1)).toBe(
      `/api/v1/backups/${BACKUP_ID}/files/search?pattern=*.bin&under=%2Fetc&caseSensitive=true&limit=1`,
    );
    expect((await cli(["files", "find", BACKUP_ID, "x", "--limit", "1001"])).code).toBe(2);
  });

  it("downloads a file to its name, refuses to overwrite it, and replaces it with --force", async () => {
    const cwd = process.cwd();
    const work = mkdtempSync(join(dir, "get-"));
    process.chdir(work);
    try {
      const res = await cli(["files", "get", BACKUP_ID, "/etc/big.bin", "--json"]);
      expect(res.err).toBe("");
      expect(res.code).toBe(0);
      expect(JSON.parse(res.out)).toEqual({ path: "/etc/big.bin", bytes: CONTENT.length, out: "big.bin" });
      expect(readFileSync(join(work, "big.bin")).equals(CONTENT)).toBe(true);

      writeFileSync(join(work, "big.bin"), "keep me");
      const before = requests.length;
      const refused = await cli(["files", "get", BACKUP_ID, "/etc/big.bin"]);
      expect(refused.code).toBe(4);
      expect(refused.err).toContain("the file exists (use --force to replace it)");
      expect(readFileSync(join(work, "big.bin"), "utf8")).toBe("keep me");
      // Only the lookup: nothing was downloaded.
      expect(requests.slice(before).every((r) => !r.includes("/content"))).toBe(true);

      const forced = await cli(["files", "get", BACKUP_ID, "/etc/big.bin", "--force"]);
      expect(forced.code).toBe(0);
      expect(forced.out).toBe("wrote /etc/big.bin (195 KiB) to big.bin");
      expect(readFileSync(join(work, "big.bin")).equals(CONTENT)).toBe(true);
      expect(readdirSync(work)).toEqual(["big.bin"]);
    } finally {
      process.chdir(cwd);
    }
  });

  it("downloads a directory as an archive, and rejects --format for a file", async () => {
    const out = join(dir, "etc.zip");
    const res = await cli(["files", "get", BACKUP_ID, "/etc", "--format", "zip", "-o", out]);
    expect(res.err).toBe("");
    expect(res.code).toBe(0);
    expect(readFileSync(out).equals(ARCHIVE)).toBe(true);
    expect(requests.at(-1)).toBe(
      `/api/v1/backups/${BACKUP_ID}/files/archive?path=%2Fetc&partition=1&format=zip`,
    );
    const wrong = await cli([
      "files",
      "get",
      BACKUP_ID,
      "/etc/big.bin",
      "--format",
      "tar",
      "-o",
      join(dir, "x"),
    ]);
    expect(wrong.code).toBe(2);
    expect(existsSync(join(dir, "x"))).toBe(false);
  });

  it("names a directory's archive after it by default and reports an unwritable output as a local error", async () => {
    const cwd = process.cwd();
    const work = mkdtempSync(join(dir, "dir-"));
    process.chdir(work);
    try {
      const res = await cli(["files", "get", BACKUP_ID, "/etc"]);
      expect(res.code).toBe(0);
      expect(readFileSync(join(work, "etc.tar")).equals(ARCHIVE)).toBe(true);
    } finally {
      process.chdir(cwd);
    }
    const nowhere = await cli([
      "files",
      "get",
      BACKUP_ID,
      "/etc/big.bin",
      "-o",
      join(dir, "no-such-dir", "x"),
    ]);
    expect(nowhere.code).toBe(4);
    expect(nowhere.err).toContain("BULWARK_CLI_FILE: cannot write");
  });

  it("leaves no file behind when the download is shorter than announced", async () => {
    const work = mkdtempSync(join(dir, "short-"));
    const out = join(work, "short.bin");
    const res = await cli(["files", "get", BACKUP_ID, "/etc/short.bin", "-o", out]);
    expect(res.code).not.toBe(0);
    expect(res.err).toMatch(/BULWARK_CLI_(UNREACHABLE|BAD_RESPONSE)/);
    expect(readdirSync(work)).toEqual([]);
  });

  it("fails a download that stops sending instead of waiting forever", async () => {
    const source = new PassThrough();
    source.write(Buffer.alloc(100));
    const meter = downloadMeter(150);
    const sink = new Writable({ write: (_c, _e, done) => done() });
    const started = Date.now();
    await expect(pipeline(source, meter, sink)).rejects.toBeInstanceOf(DownloadStalledError);
    expect(meter.bytes).toBe(100);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });
});
