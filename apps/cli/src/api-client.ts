// A typed REST client over the shared zod contracts (@bulwark/api): every response body is parsed
// with the route's schema before a command sees it, the server's error body comes back as a
// ServerError carrying its Bulwark code, and "cannot reach the server" is reported as such instead of
// a stack trace.

import { BulwarkError, type ErrorCode, errorCatalogue } from "@bulwark/errors";
import { z } from "zod";

/** A CLI call should fail in seconds when the server is gone, not hang a script. */
export const REQUEST_TIMEOUT_MS = 15_000;

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
export type QueryValue = string | number | boolean | readonly string[] | undefined;

/** The server refused the request and said why (its error body, its Bulwark code). */
export class ServerError extends BulwarkError {
  readonly status: number;
  constructor(
    code: ErrorCode,
    message: string,
    status: number,
    details: Record<string, unknown> | undefined,
  ) {
    super(code, message, details ? { details } : undefined);
    this.name = "ServerError";
    this.status = status;
  }
}

const errorBodySchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});

/** How a request authenticates: an API token (scripts, the CLI) or a console session (login only). */
export type Credentials =
  | { kind: "none" }
  | { kind: "token"; token: string }
  | { kind: "session"; cookie: string; csrfToken: string };

export interface ApiResponse<T> {
  status: number;
  body: T;
  headers: Headers;
}

export interface RequestOptions<S extends z.ZodType> {
  schema: S;
  query?: Record<string, QueryValue>;
  body?: unknown;
  /** Statuses the caller handles itself (e.g. 503 from /healthz), parsed with `schema` too. */
  acceptStatuses?: readonly number[];
}

export class ApiClient {
  constructor(
    readonly server: string,
    private readonly credentials: Credentials = { kind: "none" },
    private readonly timeoutMs = REQUEST_TIMEOUT_MS,
  ) {}

  /** The same server with other credentials (login turns a session into a token). */
  withCredentials(credentials: Credentials): ApiClient {
    return new ApiClient(this.server, credentials, this.timeoutMs);
  }

  url(path: string, query?: Record<string, QueryValue>): string {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) params.append(key, v);
      else params.append(key, String(value));
    }
    const qs = params.toString();
    return `${this.server}${path}${qs ? `?${qs}` : ""}`;
  }

  private headers(method: HttpMethod, hasBody: boolean, accept: string): Record<string, string> {
    const headers: Record<string, string> = { accept };
    if (hasBody) headers["content-type"] = "application/json";
    const c = this.credentials;
    if (c.kind === "token") headers.authorization = `Bearer ${c.token}`;
    if (c.kind === "session") {
      headers.cookie = c.cookie;
      // Double-submit CSRF: required on state-changing requests made with a session cookie.
      if (method !== "GET") headers["x-csrf-token"] = c.csrfToken;
    }
    return headers;
  }

  private async fetch(
    method: HttpMethod,
    url: string,
    body: unknown,
    accept: string,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    try {
      return await fetch(url, {
        method,
        headers: this.headers(method, body !== undefined, accept),
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const why =
        e.name === "TimeoutError"
          ? `no answer within ${this.timeoutMs / 1000} s`
          : (e.cause?.code ?? e.cause?.message ?? e.message);
      throw new BulwarkError("BULWARK_CLI_UNREACHABLE", `cannot reach ${this.server}: ${why}`);
    }
  }

  async request<S extends z.ZodType>(
    method: HttpMethod,
    path: string,
    opts: RequestOptions<S>,
  ): Promise<ApiResponse<z.output<S>>> {
    const res = await this.fetch(
      method,
      this.url(path, opts.query),
      opts.body,
      "application/json",
      AbortSignal.timeout(this.timeoutMs),
    );
    const text = await res.text().catch(() => "");
    let json: unknown;
    if (text !== "") {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
        if (res.ok) throw badResponse(method, path, `HTTP ${res.status} with a body that is not JSON`);
      }
    }
    if (!res.ok && !opts.acceptStatuses?.includes(res.status))
      throw serverError(method, path, res.status, json);
    const parsed = opts.schema.safeParse(json);
    if (!parsed.success) {
      const issues = parsed.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`)
        .join("; ");
      throw badResponse(method, path, `the answer does not match the API contract (${issues})`);
    }
    return { status: res.status, body: parsed.data, headers: res.headers };
  }

  async get<S extends z.ZodType>(
    path: string,
    schema: S,
    query?: Record<string, QueryValue>,
  ): Promise<z.output<S>> {
    return (await this.request("GET", path, { schema, ...(query ? { query } : {}) })).body;
  }

  async post<S extends z.ZodType>(path: string, body: unknown, schema: S): Promise<z.output<S>> {
    return (await this.request("POST", path, { schema, body: body ?? {} })).body;
  }

  async patch<S extends z.ZodType>(path: string, body: unknown, schema: S): Promise<z.output<S>> {
    return (await this.request("PATCH", path, { schema, body })).body;
  }

  async put<S extends z.ZodType>(path: string, body: unknown, schema: S): Promise<z.output<S>> {
    return (await this.request("PUT", path, { schema, body })).body;
  }

  async delete<S extends z.ZodType>(path: string, schema: S): Promise<z.output<S>> {
    return (await this.request("DELETE", path, { schema })).body;
  }

  /**
   * Opens a Server-Sent Events stream. Only connecting is bounded by the timeout: the stream itself
   * stays open as long as the server sends; `signal` ends it.
   */
  async openEventStream(path: string, signal: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new DOMException("connect timeout", "TimeoutError")),
      this.timeoutMs,
    );
    const onAbort = () => controller.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    let res: Response;
    try {
      res = await this.fetch("GET", this.url(path), undefined, "text/event-stream", controller.signal);
    } finally {
      // Connected (or failed): from here only the caller's signal may end the stream.
      clearTimeout(timer);
    }
    if (!res.ok) {
      const json = await res.json().catch(() => undefined);
      throw serverError("GET", path, res.status, json);
    }
    if (!res.body || !(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      throw badResponse("GET", path, "expected a text/event-stream answer");
    }
    return res.body;
  }

  /**
   * Starts a download (file content, an archive): the answer's headers and its body as a stream,
   * never buffered. As with event streams only connecting is bounded by the timeout; a large
   * file may take as long as it takes.
   */
  async openDownload(
    path: string,
    query?: Record<string, QueryValue>,
  ): Promise<{ body: ReadableStream<Uint8Array>; headers: Headers }> {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new DOMException("connect timeout", "TimeoutError")),
      this.timeoutMs,
    );
    let res: Response;
    try {
      res = await this.fetch("GET", this.url(path, query), undefined, "*/*", controller.signal);
    } finally {
      clearTimeout(timer);
    }
    if (!res.ok) {
      const json = await res.json().catch(() => undefined);
      throw serverError("GET", path, res.status, json);
    }
    if (!res.body) throw badResponse("GET", path, `HTTP ${res.status} without a body`);
    return { body: res.body, headers: res.headers };
  }
}

function badResponse(method: HttpMethod, path: string, why: string): BulwarkError {
  return new BulwarkError("BULWARK_CLI_BAD_RESPONSE", `${method} ${path}: ${why}`);
}

function serverError(method: HttpMethod, path: string, status: number, json: unknown): BulwarkError {
  const parsed = errorBodySchema.safeParse(json);
  if (!parsed.success) return badResponse(method, path, `HTTP ${status} without a Bulwark error body`);
  const { code, message, details } = parsed.data.error;
  if (code in errorCatalogue) return new ServerError(code as ErrorCode, message, status, details);
  // A newer server may know codes this CLI does not; keep its code visible in the message.
  return new ServerError("BULWARK_CLI_BAD_RESPONSE", `${code}: ${message}`, status, details);
}
