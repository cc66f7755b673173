// The one way the console talks to /api/v1: every answer is parsed with the shared zod contract
// (@bulwark/api), every call has a deadline, state-changing calls carry the CSRF token, and a
// failure becomes an ApiError that names the server's BULWARK_* code.
import { errorBodySchema } from "@bulwark/api";
import type { z } from "zod";

/** Long enough for a loaded server, short enough that a person is told something soon. */
export const REQUEST_TIMEOUT_MS = 15_000;

const API_PREFIX = "/api/v1";
const SAFE_METHODS = new Set(["GET", "HEAD"]);
/** The CSRF cookie's names (with and without the __Host- prefix, see docs/api.md). */
const CSRF_COOKIES = ["__Host-bulwark_csrf", "bulwark_csrf"];

export class ApiError extends Error {
  constructor(
    /** HTTP status, or 0 when no answer came (network error, timeout). */
    readonly status: number,
    /** The BULWARK_* code of the error body, or a console-side code for transport failures. */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** Called on every 401 so the app can return to the login page. */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

let csrfToken: string | undefined;
export function setCsrfToken(token: string | undefined): void {
  csrfToken = token;
}

function csrfFromCookie(): string | undefined {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name !== undefined && CSRF_COOKIES.includes(name)) return decodeURIComponent(rest.join("="));
  }
  return undefined;
}

export type Query = Record<string, string | number | boolean | undefined>;

export function apiUrl(path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== "") params.set(k, String(v));
  }
  const qs = params.toString();
  return `${API_PREFIX}${path}${qs ? `?${qs}` : ""}`;
}

function describeTransportError(err: unknown, timeoutMs: number): ApiError {
  if (err instanceof DOMException && err.name === "TimeoutError") {
    return new ApiError(0, "CONSOLE_TIMEOUT", `The server did not answer within ${timeoutMs / 1000} s.`);
  }
  if (err instanceof DOMException && err.name === "AbortError") {
    return new ApiError(0, "CONSOLE_ABORTED", "The request was cancelled.");
  }
  return new ApiError(0, "CONSOLE_UNREACHABLE", "The server cannot be reached.");
}

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Sends one request and parses the answer with `schema`; 204 answers parse `undefined`. */
export async function request<S extends z.ZodType>(
  method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE",
  path: string,
  schema: S,
  opts: RequestOptions = {},
): Promise<z.output<S>> {
  const timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS;
  const headers: Record<string, string> = { accept: "application/json" };
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  if (!SAFE_METHODS.has(method)) {
    const token = csrfToken ?? csrfFromCookie();
    if (token) headers["x-csrf-token"] = token;
  }
  const signals = [AbortSignal.timeout(timeoutMs)];
  if (opts.signal) signals.push(opts.signal);
  let res: Response;
  try {
    res = await fetch(apiUrl(path, opts.query), {
      method,
      headers,
      credentials: "same-origin",
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: AbortSignal.any(signals),
    });
  } catch (err) {
    throw describeTransportError(err, timeoutMs);
  }
  const text = await res.text().catch(() => "");
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    if (res.status === 401 && path !== "/auth/login") onUnauthorized();
    const body = errorBodySchema.safeParse(json);
    if (body.success) throw new ApiError(res.status, body.data.error.code, body.data.error.message);
    throw new ApiError(res.status, "CONSOLE_HTTP_ERROR", `The server answered HTTP ${res.status}.`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new ApiError(
      res.status,
      "CONSOLE_BAD_ANSWER",
      `The server's answer to ${method} ${path} does not match the API contract.`,
    );
  }
  return parsed.data;
}

/** A human sentence for any error a page shows. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 403 && err.code === "BULWARK_AUTH_FORBIDDEN") {
      return `Your role may not do this (${err.code}).`;
    }
    return err.code.startsWith("BULWARK_") ? `${err.message} (${err.code})` : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}
