// Instant access (docs/nbd.md): `restore nbd` serves a restore point over NBD from the server and
// prints the URI (its export name is the secret: shown once); `restore export` opens a read-only
// export, converts it to a raw, qcow2 or vhdx file with qemu-img and closes the export again;
// `exports ls | close` list and end a server node's exports.

import { spawn } from "node:child_process";
import { statSync } from "node:fs";
import { exportSummarySchema, jobSchema, openedExportSchema } from "@bulwark/api";
import { BulwarkError } from "@bulwark/errors";
import type { ApiClient } from "../api-client.js";
import { defineCommand } from "../command.js";
import { formatBytes, formatTime, table } from "../format.js";
import { parseDuration } from "../values.js";
import { API, enumValue, fetchList, noContent, resolveAgentId, usage } from "./common.js";
import { finished, watchJob } from "./jobs.js";

/** qemu-img's output formats for `restore export` (its own format names). */
export const EXPORT_FORMATS = ["raw", "qcow2", "vhdx"] as const;

/** An export made only to convert it lives this long; the conversion closes it as soon as it ends. */
const CONVERT_EXPORT_TTL_SECONDS = 24 * 3600;

async function openExport(
  api: ApiClient,
  restorePoint: string,
  body: { writable: boolean; ttlSeconds?: number },
) {
  return api.post(`${API}/backups/${encodeURIComponent(restorePoint)}/exports`, body, openedExportSchema);
}

/** Runs qemu-img; its stderr (never the URI, which holds the secret name) explains a failure. */
function qemuImgConvert(uri: string, format: string, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // -n is not used: qemu-img creates the output file itself; the caller checked it does not exist.
    const child = spawn("qemu-img", ["convert", "-f", "raw", "-O", format, uri, out], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.once("error", (err) =>
      reject(
        new BulwarkError("BULWARK_CLI_FILE", `cannot run qemu-img (install qemu-utils): ${err.message}`),
      ),
    );
    child.once("exit", (code, signal) => {
      if (code === 0) return resolve();
      const why = stderr.split(uri).join("nbd://…").trim() || `exit ${code ?? signal}`;
      reject(new BulwarkError("BULWARK_CLI_FILE", `qemu-img convert to ${out} failed: ${why}`));
    });
  });
}

export const restoreNbdCommand = defineCommand({
  path: ["restore", "nbd"],
  summary: "serve a restore point over NBD (read-only, or --writable to a throw-away overlay)",
  args: ["restorePoint"],
  options: {
    writable: {
      type: "boolean",
      description: "accept writes into a copy-on-write overlay (the restore point never changes)",
    },
    ttl: {
      type: "string",
      valueName: "duration",
      description: "how long the export stays open, 1m to 7d (default 1h)",
    },
  },
  examples: [
    "bulwark restore nbd 6e2a… --ttl 2h",
    "qemu-img info nbd://backup.example.com:10809/<name>   # the URI it printed",
  ],
  async run(ctx, { args, options }) {
    const ttlSeconds = options.ttl === undefined ? undefined : parseDuration(options.ttl, "--ttl");
    const e = await openExport(ctx.api(), args.restorePoint, {
      writable: options.writable,
      ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
    });
    const now = ctx.now();
    return {
      data: e,
      text: [
        e.uri,
        `export ${e.id} of restore point ${e.backupId}: ${formatBytes(e.size)}, ${e.writable ? "writable (overlay)" : "read-only"}, closes ${formatTime(e.expiresAt, now)}`,
        `anyone who has the URI can read the volume until then; end it early with: bulwark exports close ${e.id}`,
      ].join("\n"),
    };
  },
});

export const restoreExportCommand = defineCommand({
  path: ["restore", "export"],
  summary: "write a restore point to a raw, qcow2 or vhdx image file (qemu-img over an NBD export)",
  args: ["restorePoint"],
  options: {
    format: { type: "string", valueName: "raw|qcow2|vhdx", description: "the image format (required)" },
    out: {
      type: "string",
      valueName: "file",
      description: "the image file to create (must not exist; required)",
    },
  },
  examples: ["bulwark restore export 6e2a… --format qcow2 --out web-01-root.qcow2"],
  async run(ctx, { args, options }) {
    const format = enumValue("--format", options.format, EXPORT_FORMATS);
    if (!format) throw usage("restore export: --format is required (raw, qcow2 or vhdx)");
    if (!options.out) throw usage("restore export: --out is required");
    const out = options.out;
    let exists = false;
    try {
      statSync(out);
      exists = true;
    } catch {
      // Absent: what we want.
    }
    if (exists)
      throw new BulwarkError("BULWARK_CLI_FILE", `cannot write ${out}: the file exists (remove it first)`);
    const api = ctx.api();
    const e = await openExport(api, args.restorePoint, {
      writable: false,
      ttlSeconds: CONVERT_EXPORT_TTL_SECONDS,
    });
    try {
      await qemuImgConvert(e.uri, format, out);
    } finally {
      // Close even when the conversion failed: an open export is readable by whoever has its name.
      await api.request("POST", `${API}/exports/${encodeURIComponent(e.id)}/close`, { schema: noContent });
    }
    const bytes = statSync(out).size;
    const { uri: _secret, ...exported } = e;
    return {
      data: { export: exported, format, out, fileBytes: bytes },
      text: `wrote restore point ${e.backupId} (${formatBytes(e.size)}) to ${out} as ${format} (${formatBytes(bytes)} on disk)`,
    };
  },
});

export const exportsLsCommand = defineCommand({
  path: ["exports", "ls"],
  summary: "NBD exports open on the server node that answers (never their URIs)",
  args: [],
  options: {},
  examples: ["bulwark exports ls"],
  async run(ctx) {
    const page = await fetchList(ctx.api(), `${API}/exports`, exportSummarySchema, {}, { all: true });
    const now = ctx.now();
    const text = table(
      [
        { header: "ID", value: (e) => e.id },
        { header: "RESTORE POINT", value: (e) => e.backupId },
        { header: "SIZE", value: (e) => formatBytes(e.size), align: "right" },
        { header: "MODE", value: (e) => (e.writable ? "writable" : "read-only") },
        { header: "CONNS", value: (e) => String(e.connections), align: "right" },
        { header: "BY", value: (e) => e.requestedBy.actorName ?? e.requestedBy.actorId ?? "-" },
        { header: "EXPIRES", value: (e) => formatTime(e.expiresAt, now) },
      ],
      page.items,
    );
    return { data: page, text };
  },
});

export const exportsCloseCommand = defineCommand({
  path: ["exports", "close"],
  summary: "close an NBD export now (connections are cut, a writable overlay is discarded)",
  args: ["id"],
  options: {},
  examples: ["bulwark exports close 2b9f…"],
  async run(ctx, { args }) {
    await ctx
      .api()
      .request("POST", `${API}/exports/${encodeURIComponent(args.id)}/close`, { schema: noContent });
    return { data: { id: args.id, closed: true }, text: `closed export ${args.id}` };
  },
});

export const restoreVolumeCommand = defineCommand({
  path: ["restore", "volume"],
  summary: "restore a restore point onto a device or image file of a machine (a restore job)",
  args: ["restorePoint"],
  options: {
    target: {
      type: "string",
      valueName: "device",
      description: "device or image file on the machine, e.g. /dev/sdb1 (required)",
    },
    agent: {
      type: "string",
      valueName: "agent",
      description: "the machine that writes it (default: the restore point's own)",
    },
    delta: { type: "boolean", description: "rewrite only the blocks that differ from what the target holds" },
    "whole-disk": {
      type: "boolean",
      description: "the restore point is a whole disk (partition table included)",
    },
    "allow-foreign-target": {
      type: "boolean",
      description: "the target is not the volume the restore point came from",
    },
    wait: { type: "boolean", description: "follow the job until it ends, as `jobs watch` does" },
  },
  examples: [
    "bulwark restore volume 6e2a… --target /dev/sdb1 --delta --wait",
    "bulwark restore volume 6e2a… --agent web-02 --target /dev/vdb --allow-foreign-target",
  ],
  async run(ctx, { args, options }) {
    if (!options.target) throw usage("restore volume: --target is required");
    const api = ctx.api();
    const agentId = options.agent === undefined ? undefined : await resolveAgentId(api, options.agent);
    const job = await api.post(
      `${API}/jobs/restore`,
      {
        backupId: args.restorePoint,
        targetPath: options.target,
        mode: options.delta ? "delta" : "full",
        ...(agentId ? { agentId } : {}),
        ...(options["whole-disk"] ? { wholeDisk: true } : {}),
        ...(options["allow-foreign-target"] ? { allowForeignTarget: true } : {}),
      },
      jobSchema,
    );
    if (!options.wait)
      return { data: job, text: `queued restore job ${job.id} (bulwark jobs watch ${job.id})` };
    if (ctx.json) ctx.io.out(JSON.stringify({ event: "created", ...job }));
    else ctx.io.out(`queued restore job ${job.id}`);
    const final = await watchJob(ctx, api, job.id);
    return { streamed: true, exitCode: finished(ctx, final) };
  },
});
