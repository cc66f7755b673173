// Authentication, users, sessions and API tokens.
import { z } from "zod";
import { idSchema, roleSchema, timestampSchema } from "./common.js";

/** The longest password accepted: bounds the work a login costs (scrypt hashes the whole thing). */
export const MAX_PASSWORD_LENGTH = 1024;
/** Shortest password a new or changed account may have. */
export const MIN_PASSWORD_LENGTH = 12;

const emailSchema = z
  .email()
  .max(254)
  .transform((e) => e.toLowerCase());

export const loginRequestSchema = z.object({
  email: z.string().min(1).max(254),
  password: z.string().min(1).max(MAX_PASSWORD_LENGTH),
});
export type LoginRequest = z.infer<typeof loginRequestSchema>;

export const userSchema = z.object({
  id: idSchema,
  email: z.string(),
  displayName: z.string(),
  role: roleSchema,
  disabled: z.boolean(),
  createdAt: timestampSchema,
  lastLoginAt: timestampSchema.nullable(),
});
export type User = z.infer<typeof userSchema>;

export const loginResponseSchema = z.object({
  user: userSchema,
  /** Send back in the x-csrf-token header on every state-changing request made with the cookie. */
  csrfToken: z.string(),
  expiresAt: timestampSchema,
});
export type LoginResponse = z.infer<typeof loginResponseSchema>;

export const meResponseSchema = z.object({
  user: userSchema,
  /** The role in effect for this request (an API token may narrow its owner's role). */
  role: roleSchema,
  via: z.enum(["session", "api-token"]),
});
export type MeResponse = z.infer<typeof meResponseSchema>;

export const sessionSchema = z.object({
  id: idSchema,
  createdAt: timestampSchema,
  lastSeenAt: timestampSchema,
  expiresAt: timestampSchema,
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  current: z.boolean(),
});
export type Session = z.infer<typeof sessionSchema>;

export const createUserRequestSchema = z.object({
  email: emailSchema,
  displayName: z.string().trim().min(1).max(200),
  role: roleSchema,
  password: z.string().min(MIN_PASSWORD_LENGTH).max(MAX_PASSWORD_LENGTH),
});
export type CreateUserRequest = z.infer<typeof createUserRequestSchema>;

export const updateUserRequestSchema = z
  .object({
    displayName: z.string().trim().min(1).max(200).optional(),
    role: roleSchema.optional(),
    disabled: z.boolean().optional(),
    password: z.string().min(MIN_PASSWORD_LENGTH).max(MAX_PASSWORD_LENGTH).optional(),
  })
  .refine((u) => Object.values(u).some((v) => v !== undefined), { error: "nothing to change" });
export type UpdateUserRequest = z.infer<typeof updateUserRequestSchema>;

export const userListQuerySchema = z.object({
  role: roleSchema.optional(),
  search: z.string().min(1).max(200).optional(),
});

export const apiTokenSchema = z.object({
  id: idSchema,
  userId: idSchema,
  name: z.string(),
  /** The token's first characters (`bwk_<prefix>`), to tell tokens apart; never the secret. */
  prefix: z.string(),
  role: roleSchema.nullable(),
  createdAt: timestampSchema,
  expiresAt: timestampSchema.nullable(),
  lastUsedAt: timestampSchema.nullable(),
  revokedAt: timestampSchema.nullable(),
});
export type ApiToken = z.infer<typeof apiTokenSchema>;

export const createApiTokenRequestSchema = z.object({
  name: z.string().trim().min(1).max(100),
  /** A narrower role than the owner's; a wider one is refused. */
  role: roleSchema.optional(),
  /** Lifetime in seconds; absent = until revoked. */
  ttlSeconds: z
    .number()
    .int()
    .min(60)
    .max(5 * 366 * 24 * 3600)
    .optional(),
});
export type CreateApiTokenRequest = z.infer<typeof createApiTokenRequestSchema>;

export const createApiTokenResponseSchema = z.object({
  apiToken: apiTokenSchema,
  /** Shown once: `bwk_<prefix>_<secret>`; only its SHA-256 is stored. */
  token: z.string(),
});
export type CreateApiTokenResponse = z.infer<typeof createApiTokenResponseSchema>;

export const apiTokenListQuerySchema = z.object({
  /** Admins only: list every user's tokens, or one user's. */
  userId: idSchema.optional(),
  all: z.enum(["true", "false"]).optional(),
});
