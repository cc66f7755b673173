// A thin REST client: JSON in and out, the server's error body turned back into a BulwarkError,
// and "cannot reach the server" reported as such instead of a stack trace.

import { BulwarkError, type ErrorCode, errorCatalogue } from "@bulwark/errors";
import type { Settings } from "./settings.js";

/** A CLI call should fail in seconds when the server is gone, not hang a script. */
export const REQUEST_TIMEOUT_MS = 15_000;

export interface ApiResponse<T> {
  status: number;
  body: T;
}

export class ApiClient {
  constructor(private readonly settings: Settings) {}

  /** GET a path; `acceptStatuses` are answers the caller handles itself (e.g. 503 from /healthz). */
  async get<T>(path: string, acceptStatuses: number[] = []): Promise<ApiResponse<T>> {
    const url = `${this.settings.server}${path}`;
    let res: Response;
    try {
      res = await fetch(url, {
        headers: {
          accept: "application/json",
          ...(this.settings.token ? { authorization: `Bearer ${this.settings.token}` } : {}),
        },
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      const cause = (err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new BulwarkError("BULWARK_CLI_UNREACHABLE", `cannot reach ${this.settings.server}: ${cause}`);
    }
    const body = (await res.json().catch(() => undefined)) as unknown;
    if (res.ok || acceptStatuses.includes(res.status)) return { status: res.status, body: body as T };
    const error = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    const code =
      error?.code && error.code in errorCatalogue ? (error.code as ErrorCode) : "BULWARK_CLI_BAD_RESPONSE";
    throw new BulwarkError(code, error?.message ?? `${url} answered HTTP ${res.status}`);
  }
}
