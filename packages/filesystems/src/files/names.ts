/**
 * Names on ext4 are bytes. Most are UTF-8; the rest must still be listed, looked up and restored
 * byte for byte. Invalid bytes are carried as lone surrogates U+DC80..U+DCFF (Python's
 * "surrogateescape"): valid UTF-8 never decodes to a lone surrogate, so the mapping is injective and
 * `nameToBytes` gives the original bytes back.
 */

const ESCAPE_BASE = 0xdc00;

export function decodeName(bytes: Buffer): string {
  let out = "";
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b < 0x80) {
      out += String.fromCharCode(b);
      i++;
      continue;
    }
    const [length, min] =
      b >= 0xf0 && b <= 0xf4 ? [4, 0x10000] : b >= 0xe0 ? [3, 0x800] : b >= 0xc2 ? [2, 0x80] : [0, 0];
    let cp = length === 4 ? b & 0x07 : length === 3 ? b & 0x0f : b & 0x1f;
    let ok = length > 0 && b <= 0xf4 && i + length <= bytes.length;
    for (let k = 1; ok && k < length; k++) {
      const c = bytes[i + k]!;
      if ((c & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (c & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are invalid UTF-8.
    if (ok && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) ok = false;
    if (ok) {
      out += String.fromCodePoint(cp);
      i += length;
    } else {
      out += String.fromCharCode(ESCAPE_BASE + b);
      i++;
    }
  }
  return out;
}

/** The on-disk bytes of a name from `decodeName` (plain UTF-8 for every valid name). */
export function nameToBytes(name: string): Buffer {
  const parts: Buffer[] = [];
  let run = "";
  for (const ch of name) {
    const cp = ch.codePointAt(0)!;
    if (ch.length === 1 && cp >= ESCAPE_BASE + 0x80 && cp <= ESCAPE_BASE + 0xff) {
      if (run) parts.push(Buffer.from(run, "utf8"));
      run = "";
      parts.push(Buffer.from([cp - ESCAPE_BASE]));
    } else {
      run += ch;
    }
  }
  if (run) parts.push(Buffer.from(run, "utf8"));
  return Buffer.concat(parts);
}

/** NTFS and FAT store UTF-16LE; unpaired surrogates survive as-is in the JavaScript string. */
export function decodeUtf16(bytes: Buffer): string {
  return bytes.toString("utf16le");
}
