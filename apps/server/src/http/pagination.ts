// Keyset pagination: a page ends with the sort key of its last item, encoded as an opaque cursor;
// the next page starts strictly after it. Stable under inserts, unlike offsets.

import { BulwarkError } from "@bulwark/errors";

export type CursorValue = string | number;

export function encodeCursor(values: CursorValue[]): string {
  return Buffer.from(JSON.stringify(values), "utf8").toString("base64url");
}

/** The values of a cursor, checked to be `count` strings or numbers; anything else is a 400. */
export function decodeCursor(cursor: string, count: number): CursorValue[] {
  let values: unknown;
  try {
    values = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    values = undefined;
  }
  if (
    !Array.isArray(values) ||
    values.length !== count ||
    !values.every((v) => typeof v === "string" || typeof v === "number")
  ) {
    throw new BulwarkError("BULWARK_GENERAL_VALIDATION", "invalid cursor", {
      details: { issues: [{ path: "cursor", message: "not a cursor this API returned" }] },
    });
  }
  return values as CursorValue[];
}

/** Fetch `limit + 1` rows; this trims the extra one and makes the cursor from the last kept row. */
export function pageOf<Row, Item>(
  rows: Row[],
  limit: number,
  key: (row: Row) => CursorValue[],
  toItem: (row: Row) => Item,
): { items: Item[]; nextCursor: string | null } {
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  const last = kept[kept.length - 1];
  return { items: kept.map(toItem), nextCursor: more && last !== undefined ? encodeCursor(key(last)) : null };
}

/** A cursor's time value back to a Date, refusing garbage. */
export function cursorDate(value: CursorValue): Date {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new BulwarkError("BULWARK_GENERAL_VALIDATION", "invalid cursor");
  return date;
}
