import { Readable } from "node:stream";
import { nameToBytes } from "../names.js";
import type { FileSystemReader, WalkOptions } from "../types.js";
import { archiveEntries, contentOf } from "./entries.js";

const BLOCK = 512;
/** ustar's 12-byte octal size field holds 11 digits: up to 8 GiB - 1; larger sizes go in a pax record. */
const USTAR_MAX_SIZE = 8 ** 11 - 1;
const USTAR_MAX_ID = 8 ** 7 - 1;

function octal(header: Buffer, offset: number, width: number, value: number): void {
  header.write(`${value.toString(8).padStart(width - 1, "0")}\0`, offset, width, "latin1");
}

/** One "length key=value\n" pax record; the length counts its own digits. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, "utf8"), value, Buffer.from("\n")]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return Buffer.concat([Buffer.from(String(length)), body]);
}

function header(
  name: Buffer,
  type: string,
  fields: { mode: number; uid: number; gid: number; size: number; mtime: number; linkname?: Buffer },
): Buffer {
  const h = Buffer.alloc(BLOCK);
  name.copy(h, 0, 0, Math.min(100, name.length));
  octal(h, 100, 8, fields.mode & 0o7777);
  octal(h, 108, 8, fields.uid > USTAR_MAX_ID ? 0 : fields.uid);
  octal(h, 116, 8, fields.gid > USTAR_MAX_ID ? 0 : fields.gid);
  octal(h, 124, 12, Math.min(fields.size, USTAR_MAX_SIZE));
  octal(h, 136, 12, Math.max(0, Math.min(fields.mtime, 8 ** 11 - 1)));
  h.write(type, 156, 1, "latin1");
  fields.linkname?.copy(h, 157, 0, Math.min(100, fields.linkname.length));
  h.write("ustar\0", 257, 6, "latin1");
  h.write("00", 263, 2, "latin1");
  h.fill(0x20, 148, 156); // the checksum is computed with its own field as spaces
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "latin1");
  return h;
}

function needsPax(value: Buffer): boolean {
  return value.length > 100 || value.some((b) => b >= 0x80);
}

/**
 * A POSIX (pax) tar of `path`: directories, regular files (streamed piece by piece), symlinks and
 * hard links, with mode, owner ids and mtime. Long or non-ASCII names and link targets, sizes of
 * 8 GiB and more, owner ids past ustar's range and sub-second mtimes go into pax headers. Other
 * file types (devices, FIFOs, sockets) are left out.
 */
export function tarStream(fs: FileSystemReader, path: string, options: WalkOptions = {}): Readable {
  return Readable.from(tarBlocks(fs, path, options), { objectMode: false });
}

export async function* tarBlocks(
  fs: FileSystemReader,
  path: string,
  options: WalkOptions = {},
): AsyncGenerator<Buffer> {
  let serial = 0;
  for await (const entry of archiveEntries(fs, path, options)) {
    const { stat } = entry;
    let type: string;
    let linkname: Buffer | undefined;
    let size = 0;
    if (entry.hardLinkTo !== undefined) {
      type = "1";
      linkname = nameToBytes(entry.hardLinkTo);
    } else if (stat.type === "file") {
      type = "0";
      size = stat.size;
    } else if (stat.type === "directory") type = "5";
    else if (stat.type === "symlink") {
      type = "2";
      linkname = nameToBytes(await fs.readlink(stat.path));
    } else continue;
    const name = nameToBytes(stat.type === "directory" ? `${entry.name}/` : entry.name);
    const mtimeMs = stat.mtime.getTime();
    const mtime = Math.floor(mtimeMs / 1000);
    const uid = stat.uid ?? 0;
    const gid = stat.gid ?? 0;
    const pax: Buffer[] = [];
    if (needsPax(name)) pax.push(paxRecord("path", name));
    if (linkname && needsPax(linkname)) pax.push(paxRecord("linkpath", linkname));
    if (size > USTAR_MAX_SIZE) pax.push(paxRecord("size", Buffer.from(String(size))));
    if (uid > USTAR_MAX_ID) pax.push(paxRecord("uid", Buffer.from(String(uid))));
    if (gid > USTAR_MAX_ID) pax.push(paxRecord("gid", Buffer.from(String(gid))));
    if (mtimeMs % 1000 !== 0 || mtime < 0)
      pax.push(paxRecord("mtime", Buffer.from((mtimeMs / 1000).toFixed(3))));
    if (pax.length > 0) {
      const body = Buffer.concat(pax);
      const paxName = Buffer.from(`PaxHeaders.0/${serial++}`);
      yield header(paxName, "x", { mode: 0o644, uid: 0, gid: 0, size: body.length, mtime });
      yield body;
      yield padding(body.length);
    }
    yield header(name, type, { mode: stat.mode, uid, gid, size, mtime, ...(linkname ? { linkname } : {}) });
    if (type === "0" && size > 0) {
      yield* contentOf(fs, stat);
      yield padding(size);
    }
  }
  yield Buffer.alloc(2 * BLOCK);
}

function padding(length: number): Buffer {
  return Buffer.alloc((BLOCK - (length % BLOCK)) % BLOCK);
}
