// Shapes every /api/v1 resource shares: IDs, times, the error body and list pagination.
import { z } from "zod";

/** Largest page a list returns; bigger `limit`s are refused rather than silently clipped. */
export const MAX_PAGE_SIZE = 200;
export const DEFAULT_PAGE_SIZE = 50;

export const idSchema = z.uuid();
/** Times travel as ISO 8601 strings in UTC. */
export const timestampSchema = z.iso.datetime();

export const idParamsSchema = z.object({ id: idSchema });

/** `?limit=&cursor=`: keyset pagination; `cursor` is the opaque `nextCursor` of the previous page. */
export const pageQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(DEFAULT_PAGE_SIZE),
  cursor: z.string().min(1).max(500).optional(),
});

/** Every list answers `{ items, nextCursor }`; `nextCursor` is null on the last page. */
export function pageSchema<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), nextCursor: z.string().nullable() });
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** The one error body of every REST failure (see docs/errors.md). */
export const errorBodySchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;

export const roleSchema = z.enum(["ADMIN", "OPERATOR", "HELPDESK", "AUDITOR"]);
export type Role = z.infer<typeof roleSchema>;

/** Query-string booleans: only the words true and false, never "any non-empty string". */
export const queryBooleanSchema = z.enum(["true", "false"]).transform((v) => v === "true");
