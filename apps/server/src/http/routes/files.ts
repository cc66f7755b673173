// File-level restore over REST: the layout of a restore point, a directory listing, a search by
// name, and downloads of one file or of a directory as a tar or zip stream. Read from the
// repository in userspace (apps/server/src/files); every download is audited before a byte leaves.

import { finished } from "node:stream";
import {
  archiveQuerySchema,
  type FileEntry,
  fileListingSchema,
  fileQuerySchema,
  fileSearchQuerySchema,
  fileSearchResultSchema,
  idParamsSchema,
  volumeLayoutSchema,
} from "@bulwark/api";
import { BulwarkError } from "@bulwark/errors";
import { type FileStat, tarStream, zipStream } from "@bulwark/filesystems";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { audit, tenantOf } from "../context.js";
import type { ApiDeps, RestorePointFileAccess } from "../deps.js";

function entryOut(s: FileStat): FileEntry {
  return {
    name: s.name,
    path: s.path,
    type: s.type,
    size: s.size,
    mtime: s.mtime.toISOString(),
    mode: s.mode,
    id: s.id,
    links: s.links,
    ...(s.uid === undefined ? {} : { uid: s.uid }),
    ...(s.gid === undefined ? {} : { gid: s.gid }),
    ...(s.attributes === undefined ? {} : { attributes: s.attributes }),
  };
}

/** `filename*=` (RFC 6266/5987) keeps non-ASCII names; the plain `filename=` is an ASCII fallback. */
function attachment(reply: FastifyReply, name: string): void {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_") || "download";
  reply.header(
    "content-disposition",
    `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`,
  );
  // A restored file is the caller's data, never something for the browser to render or sniff.
  reply.header("x-content-type-options", "nosniff");
  reply.header("cache-control", "no-store");
}

export function fileRoutes(deps: ApiDeps, files: RestorePointFileAccess): FastifyPluginAsyncZod {
  /**
   * The restore point, held until the response has ended or was cut: a download streams long after
   * the handler returned, and its point must stay open and pinned until the last byte.
   */
  const leased = async (request: FastifyRequest, reply: FastifyReply, backupId: string) => {
    const lease = await files.lease(tenantOf(request), backupId);
    finished(reply.raw, () => lease.release());
    return lease;
  };
  const filesystem = async (
    request: FastifyRequest,
    reply: FastifyReply,
    backupId: string,
    partition: number | undefined,
  ) => (await leased(request, reply, backupId)).filesystem(partition);

  return async (app) => {
    app.get(
      "/backups/:id/volume",
      {
        schema: {
          tags: ["files"],
          summary: "Partition table and filesystems of a restore point",
          params: idParamsSchema,
          response: { 200: volumeLayoutSchema },
        },
      },
      async (request, reply) => {
        const { volume } = await leased(request, reply, request.params.id);
        return {
          table: volume.table?.type ?? null,
          partitions: volume.partitions.map((p) => ({
            number: p.number,
            offset: p.offset,
            length: p.length,
            type: p.type,
            filesystem: p.filesystem,
            name: p.name ?? null,
          })),
        };
      },
    );

    app.get(
      "/backups/:id/files",
      {
        schema: {
          tags: ["files"],
          summary: "A path inside a restore point: its entry, and its children when it is a directory",
          params: idParamsSchema,
          querystring: fileQuerySchema,
          response: { 200: fileListingSchema },
        },
      },
      async (request, reply) => {
        const { partition, reader } = await filesystem(
          request,
          reply,
          request.params.id,
          request.query.partition,
        );
        const entry = await reader.stat(request.query.path);
        return {
          partition,
          filesystem: reader.kind,
          entry: entryOut(entry),
          entries: entry.type === "directory" ? (await reader.readdir(entry.path)).map(entryOut) : null,
          linkTarget: entry.type === "symlink" ? await reader.readlink(entry.path) : null,
        };
      },
    );

    app.get(
      "/backups/:id/files/search",
      {
        schema: {
          tags: ["files"],
          summary: "Find files by name (glob or substring) inside a restore point",
          params: idParamsSchema,
          querystring: fileSearchQuerySchema,
          response: { 200: fileSearchResultSchema },
        },
      },
      async (request, reply) => {
        const q = request.query;
        const { partition, reader } = await filesystem(request, reply, request.params.id, q.partition);
        const found = await reader.find(q.pattern, {
          under: q.under,
          caseInsensitive: !q.caseSensitive,
          limit: q.limit,
        });
        return { partition, matches: found.matches.map(entryOut), truncated: found.truncated };
      },
    );

    app.get(
      "/backups/:id/files/content",
      {
        schema: {
          tags: ["files"],
          summary: "Download one file of a restore point (audited)",
          params: idParamsSchema,
          querystring: fileQuerySchema,
        },
      },
      async (request, reply) => {
        const { partition, reader } = await filesystem(
          request,
          reply,
          request.params.id,
          request.query.partition,
        );
        const entry = await reader.stat(request.query.path);
        if (entry.type !== "file") {
          throw new BulwarkError(
            entry.type === "directory" ? "BULWARK_FS_IS_A_DIRECTORY" : "BULWARK_GENERAL_VALIDATION",
            `${entry.path} is a ${entry.type}, not a file${entry.type === "directory" ? ": download it as an archive" : ""}`,
            { details: { path: entry.path, type: entry.type } },
          );
        }
        await audit(deps, request, {
          action: "restore.file.download",
          targetType: "backup",
          targetId: request.params.id,
          details: { partition, path: entry.path, bytes: entry.size },
        });
        attachment(reply, entry.name);
        reply.type("application/octet-stream").header("content-length", String(entry.size));
        return reply.send(reader.open(entry.path));
      },
    );

    app.get(
      "/backups/:id/files/archive",
      {
        schema: {
          tags: ["files"],
          summary: "Download a directory of a restore point as a tar or zip stream (audited)",
          params: idParamsSchema,
          querystring: archiveQuerySchema,
        },
      },
      async (request, reply) => {
        const q = request.query;
        const { partition, reader } = await filesystem(request, reply, request.params.id, q.partition);
        const entry = await reader.stat(q.path);
        await audit(deps, request, {
          action: "restore.directory.download",
          targetType: "backup",
          targetId: request.params.id,
          details: { partition, path: entry.path, format: q.format },
        });
        attachment(reply, `${entry.name || "root"}.${q.format}`);
        reply.type(q.format === "zip" ? "application/zip" : "application/x-tar");
        return reply.send(q.format === "zip" ? zipStream(reader, entry.path) : tarStream(reader, entry.path));
      },
    );
  };
}
