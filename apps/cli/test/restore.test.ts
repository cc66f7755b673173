// `restore nbd` and `restore export` against a real NBD server (@bulwark/nbd, the one bulwark-server
// runs) behind a local HTTP server that answers the export routes as the API does, with real
// qemu-img: the image the CLI writes must hold the restore point's bytes, and the export must be
// closed afterwards.
import { execFile } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdServer } from "../../../packages/nbd/src/index.js";
import { run } from "../src/run.js";

// Async only: the NBD server runs in this process, so a synchronous qemu-img would deadlock it.
const run$ = promisify(execFile);
const BACKUP_ID = randomUUID();
const VOLUME = randomBytes(3 * 1024 * 1024 + 512);

describe("restore nbd and restore export", () => {
  let nbd: NbdServer;
  let http: Server;
  let base: string;
  const dir = mkdtempSync(join(tmpdir(), "bulwark-cli-restore-"));
  const requests: string[] = [];

  beforeAll(async () => {
    nbd = new NbdServer({ port: 0 });
    await nbd.listen();
    http = createServer((req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => {
        body += d.toString();
      });
      req.on("end", async () => {
        requests.push(`${req.method} ${req.url}`);
        const json = (status: number, value: unknown) =>
          res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
        if (req.method === "POST" && req.url === `/api/v1/backups/${BACKUP_ID}/exports`) {
          const input = JSON.parse(body) as { writable: boolean; ttlSeconds?: number };
          const opened = await nbd.addExport({
            source: { size: VOLUME.length, read: async (o, l) => VOLUME.subarray(o, o + l) },
            writable: input.writable,
            expiresAt: new Date(Date.now() + (input.ttlSeconds ?? 3600) * 1000),
          });
          return json(201, {
            id: opened.id,
            backupId: BACKUP_ID,
            writable: opened.writable,
            size: opened.size,
            expiresAt: opened.expiresAt.toISOString(),
            uri: opened.uri,
          });
        }
        const close = /^\/api\/v1\/exports\/([^/]+)\/close$/.exec(req.url ?? "");
        if (req.method === "POST" && close) {
          await nbd.removeExport(close[1]!);
          return res.writeHead(204).end();
        }
        return json(404, { error: { code: "BULWARK_API_NOT_FOUND", message: "no such thing" } });
      });
    });
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await nbd.close();
    http.closeAllConnections();
    await new Promise((r) => http.close(r));
  });

  async function cli(argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await run(["--server", base, ...argv], {
      out: (t) => out.push(t),
      err: (t) => err.push(t),
      env: { XDG_CONFIG_HOME: dir, BULWARK_TOKEN: "bwk_test_token" },
    });
    return { code, out: out.join("\n"), err: err.join("\n") };
  }

  it("serves a restore point over NBD and prints the URI a client reads it with", async () => {
    const res = await cli(["restore", "nbd", BACKUP_ID, "--ttl", "10m"]);
    expect(res.err).toBe("");
    expect(res.code).toBe(0);
    const uri = res.out.split("\n")[0]!;
    expect(uri).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/\S+$/);
    expect(res.out).toContain("read-only");
    const info = JSON.parse((await run$("qemu-img", ["info", "--output=json", uri])).stdout) as {
      "virtual-size": number;
    };
    // Padded to whole 512-byte sectors, as the API says.
    expect(info["virtual-size"]).toBe(VOLUME.length);
    expect(nbd.listExports()).toHaveLength(1);
    for (const e of nbd.listExports()) await nbd.removeExport(e.id);
  });

  it("writes a qcow2 image with the restore point's bytes and closes the export", async () => {
    const out = join(dir, "root.qcow2");
    const res = await cli(["restore", "export", BACKUP_ID, "--format", "qcow2", "--out", out, "--json"]);
    expect(res.err).toBe("");
    expect(res.code).toBe(0);
    const data = JSON.parse(res.out) as { format: string; out: string; export: Record<string, unknown> };
    expect(data).toMatchObject({ format: "qcow2", out, export: { backupId: BACKUP_ID, writable: false } });
    // The secret export name stays out of the output.
    expect(data.export.uri).toBeUndefined();
    expect(nbd.listExports()).toEqual([]);
    expect(requests.filter((r) => r.endsWith("/close"))).toHaveLength(1);

    const back = join(dir, "back.raw");
    await run$("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", out, back]);
    expect(readFileSync(back).equals(VOLUME)).toBe(true);
  });

  it("refuses an existing output file before opening an export, and a missing --format", async () => {
    const existing = join(dir, "exists.raw");
    writeFileSync(existing, "keep me");
    const before = requests.length;
    const res = await cli(["restore", "export", BACKUP_ID, "--format", "raw", "--out", existing]);
    expect(res.code).toBe(4);
    expect(res.err).toBe(
      `bulwark: BULWARK_CLI_FILE: cannot write ${existing}: the file exists (remove it first)`,
    );
    expect(readFileSync(existing, "utf8")).toBe("keep me");
    expect(requests.length).toBe(before);
    const noFormat = await cli(["restore", "export", BACKUP_ID, "--out", join(dir, "x.raw")]);
    expect(noFormat.code).toBe(2);
    const badFormat = await cli([
      "restore",
      "export",
      BACKUP_ID,
      "--format",
      "vmdk",
      "--out",
      join(dir, "x.raw"),
    ]);
    expect(badFormat.err).toContain('--format "vmdk": expected one of raw, qcow2, vhdx');
  });

  it("closes the export even when qemu-img fails", async () => {
    const res = await cli([
      "restore",
      "export",
      BACKUP_ID,
      "--format",
      "raw",
      "--out",
      join(dir, "no-such-dir", "x.raw"),
    ]);
    expect(res.code).toBe(4);
    expect(res.err).toMatch(/^bulwark: BULWARK_CLI_FILE: qemu-img convert to .* failed: /);
    expect(res.err).not.toMatch(/nbd:\/\/127/);
    expect(nbd.listExports()).toEqual([]);
  });
});
