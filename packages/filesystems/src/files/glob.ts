import { invalidPath } from "./path.js";

/** Longest accepted pattern; a search pattern is a name, not a program. */
const MAX_PATTERN_LENGTH = 255;

type Token =
  | { kind: "star" }
  | { kind: "one" }
  | { kind: "char"; c: string }
  | { kind: "set"; negate: boolean; items: Array<[string, string]> };

/**
 * A name matcher: with `*`, `?` or `[...]` the pattern is a glob matched against the whole name;
 * otherwise it matches names that contain it. Globs are matched with the two-pointer wildcard
 * algorithm (backtrack only to the last star), so no pattern can take more than
 * O(pattern × name) steps, unlike a RegExp translation.
 */
export function nameMatcher(pattern: string, caseInsensitive: boolean): (name: string) => boolean {
  if (typeof pattern !== "string" || pattern.length === 0 || pattern.length > MAX_PATTERN_LENGTH) {
    throw invalidPath(`search pattern must be 1..${MAX_PATTERN_LENGTH} characters`, String(pattern));
  }
  if (pattern.includes("/") || pattern.includes("\0")) {
    throw invalidPath("search pattern is a name, not a path", pattern);
  }
  const fold = (s: string): string => (caseInsensitive ? s.toLowerCase() : s);
  if (!/[*?[]/.test(pattern)) {
    const needle = fold(pattern);
    return (name) => fold(name).includes(needle);
  }
  const tokens = tokenize(fold(pattern));
  return (name) => matchTokens(tokens, [...fold(name)]);
}

function tokenize(pattern: string): Token[] {
  const chars = [...pattern];
  const tokens: Token[] = [];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === "*") {
      if (tokens[tokens.length - 1]?.kind !== "star") tokens.push({ kind: "star" });
    } else if (c === "?") tokens.push({ kind: "one" });
    else if (c === "[") {
      let j = i + 1;
      const negate = chars[j] === "!" || chars[j] === "^";
      if (negate) j++;
      const start = j;
      // A "]" right after "[" or "[!" is a member, as in POSIX globs.
      while (j < chars.length && (chars[j] !== "]" || j === start)) j++;
      if (j >= chars.length) {
        tokens.push({ kind: "char", c });
        continue;
      }
      const body = chars.slice(start, j);
      const items: Array<[string, string]> = [];
      for (let k = 0; k < body.length; k++) {
        if (body[k + 1] === "-" && k + 2 < body.length) {
          items.push([body[k]!, body[k + 2]!]);
          k += 2;
        } else items.push([body[k]!, body[k]!]);
      }
      tokens.push({ kind: "set", negate, items });
      i = j;
    } else tokens.push({ kind: "char", c });
  }
  return tokens;
}

function matchOne(token: Token, c: string): boolean {
  switch (token.kind) {
    case "one":
      return true;
    case "char":
      return token.c === c;
    case "set": {
      const inSet = token.items.some(([lo, hi]) => c >= lo && c <= hi);
      return inSet !== token.negate;
    }
    default:
      return false;
  }
}

function matchTokens(tokens: Token[], name: string[]): boolean {
  let t = 0;
  let n = 0;
  let starT = -1;
  let starN = 0;
  while (n < name.length) {
    const token = tokens[t];
    if (token && token.kind !== "star" && matchOne(token, name[n]!)) {
      t++;
      n++;
    } else if (token?.kind === "star") {
      starT = t++;
      starN = n;
    } else if (starT >= 0) {
      t = starT + 1;
      n = ++starN;
    } else return false;
  }
  while (tokens[t]?.kind === "star") t++;
  return t === tokens.length;
}
