import type { ByteRange } from "@bulwark/filesystems";
import { normaliseRanges } from "@bulwark/filesystems";
import { agentError } from "../errors.js";

/** thin_delta counts data_block_size in 512-byte sectors, as device-mapper does. */
const SECTOR_BYTES = 512;

export interface ThinDelta {
  /** Bytes per thin data block (the pool's chunk size). */
  blockBytes: number;
  /** Thin device ids compared. */
  left: number;
  right: number;
  /** Blocks whose content differs between the two (different, left_only, right_only), in bytes. */
  changed: ByteRange[];
  /** Blocks mapped identically in both. */
  same: ByteRange[];
}

const ELEMENT = /<(\/?)([a-z_]+)((?:\s+[a-z_]+="[^"]*")*)\s*(\/?)>/g;
const ATTRIBUTE = /([a-z_]+)="([^"]*)"/g;

function attributes(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(ATTRIBUTE)) out[m[1]!] = m[2]!;
  return out;
}

function integer(value: string | undefined, what: string): number {
  const n = Number(value);
  if (value === undefined || !/^\d+$/.test(value) || !Number.isSafeInteger(n)) {
    throw agentError(
      "BULWARK_AGENT_COMMAND_OUTPUT_INVALID",
      `thin_delta: ${what} "${value}" is not an integer`,
    );
  }
  return n;
}

/**
 * Parses thin_delta's XML, both the compact form (`<different begin= length=/>`) and --verbose
 * (`<different><range begin= …/></different>`). begin/length are thin (virtual) block numbers of
 * the devices; "left_only" blocks were discarded since the base, so they now read as zeroes and
 * count as changed too.
 */
export function parseThinDelta(xml: string): ThinDelta {
  let blockBytes: number | undefined;
  let left: number | undefined;
  let right: number | undefined;
  const changed: ByteRange[] = [];
  const same: ByteRange[] = [];
  let section: string | undefined;
  let sawDiff = false;
  const add = (kind: string, attrs: Record<string, string>): void => {
    if (blockBytes === undefined)
      throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "thin_delta: range before <superblock>");
    const begin = integer(attrs.begin, "begin");
    const length = integer(attrs.length, "length");
    const range = { offset: begin * blockBytes, length: length * blockBytes };
    if (kind === "same") same.push(range);
    else changed.push(range);
  };
  for (const m of xml.matchAll(ELEMENT)) {
    const [, closing, name, attrText, selfClosing] = m;
    const attrs = attributes(attrText ?? "");
    if (closing) {
      if (name === section) section = undefined;
      continue;
    }
    switch (name) {
      case "superblock":
        blockBytes = integer(attrs.data_block_size, "data_block_size") * SECTOR_BYTES;
        if (blockBytes === 0)
          throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "thin_delta: zero data block size");
        break;
      case "diff":
        sawDiff = true;
        left = integer(attrs.left, "left");
        right = integer(attrs.right, "right");
        break;
      case "same":
      case "different":
      case "left_only":
      case "right_only":
        if (selfClosing) add(name, attrs);
        else section = name;
        break;
      case "range":
        if (!section)
          throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "thin_delta: <range> outside a section");
        add(section, attrs);
        break;
      default:
        throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", `thin_delta: unexpected element <${name}>`);
    }
  }
  if (blockBytes === undefined || !sawDiff || left === undefined || right === undefined) {
    throw agentError(
      "BULWARK_AGENT_COMMAND_OUTPUT_INVALID",
      "thin_delta output lacks <superblock> or <diff>",
    );
  }
  return { blockBytes, left, right, changed: normaliseRanges(changed), same: normaliseRanges(same) };
}
