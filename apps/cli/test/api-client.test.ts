// The client against a real local HTTP server that answers what a broken proxy, a newer server or
// a hung server would: each must become the documented error code and exit code.

import { mkdtempSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jobSchema } from "@bulwark/api";
import { BulwarkError } from "@bulwark/errors";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient, ServerError } from "../src/api-client.js";
import { EXIT, exitCodeFor } from "../src/exit-codes.js";
import { run } from "../src/run.js";

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const JOB_ID = "41d2d3f0-0000-4000-8000-000000000000";

function job(state: string, bytesDone: number) {
  return {
    id: JOB_ID,
    kind: "BACKUP",
    state,
    agentId: null,
    policyId: null,
    requestedById: null,
    params: {},
    result: null,
    progress: bytesDone / 100,
    bytesDone,
    bytesTotal: 100,
    attempts: 1,
    maxAttempts: 3,
    errorCode: null,
    errorMessage: null,
    retryOfId: null,
    cancelRequestedAt: null,
    createdAt: "2026-11-29T15:00:00.000Z",
    scheduledFor: null,
    startedAt: null,
    finishedAt: null,
  };
}

describe("ApiClient against odd answers", () => {
  let server: Server;
  let base: string;
  const routes = new Map<string, Handler>();
  const seen: { url: string; auth: string | undefined }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ url: req.url ?? "", auth: req.headers.authorization });
      const handler = routes.get((req.url ?? "").split("?")[0]!);
      if (handler) handler(req, res);
      else
        res
          .writeHead(404, { "content-type": "application/json" })
          .end(JSON.stringify({ error: { code: "BULWARK_GENERAL_NOT_FOUND", message: "no route" } }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  async function failure(p: Promise<unknown>): Promise<BulwarkError> {
    try {
      await p;
    } catch (err) {
      if (err instanceof BulwarkError) return err;
      throw err;
    }
    throw new Error("expected a failure");
  }

  it("sends the token and the query, and parses the answer with the contract", async () => {
    routes.set("/j", (_req, res) =>
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(job("RUNNING", 5))),
    );
    const api = new ApiClient(base, { kind: "token", token: "bwk_a_b" });
    const body = await api.get("/j", jobSchema, { tag: ["a", "b"], limit: 5, skip: undefined });
    expect(body.state).toBe("RUNNING");
    expect(seen.at(-1)).toEqual({ url: "/j?tag=a&tag=b&limit=5", auth: "Bearer bwk_a_b" });
  });

  it("turns a body that breaks the contract into BULWARK_CLI_BAD_RESPONSE (exit 3)", async () => {
    routes.set("/bad", (_req, res) =>
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ id: 1 })),
    );
    const err = await failure(new ApiClient(base).get("/bad", jobSchema));
    expect(err.code).toBe("BULWARK_CLI_BAD_RESPONSE");
    expect(err.message).toContain("does not match the API contract");
    expect(exitCodeFor(err)).toBe(EXIT.NETWORK);
  });

  it("turns a proxy's HTML error page into BULWARK_CLI_BAD_RESPONSE, not an API error", async () => {
    routes.set("/proxy", (_req, res) =>
      res.writeHead(502, { "content-type": "text/html" }).end("<html>Bad Gateway</html>"),
    );
    const err = await failure(new ApiClient(base).get("/proxy", jobSchema));
    expect(err).not.toBeInstanceOf(ServerError);
    expect(err.message).toBe("GET /proxy: HTTP 502 without a Bulwark error body");
    expect(exitCodeFor(err)).toBe(EXIT.NETWORK);
  });

  it("keeps the server's code: known ones as is, unknown ones in the message (exit 1 both)", async () => {
    routes.set("/forbidden", (_req, res) =>
      res
        .writeHead(403, { "content-type": "application/json" })
        .end(JSON.stringify({ error: { code: "BULWARK_AUTH_FORBIDDEN", message: "admins only" } })),
    );
    routes.set("/newer", (_req, res) =>
      res
        .writeHead(409, { "content-type": "application/json" })
        .end(JSON.stringify({ error: { code: "BULWARK_FUTURE_THING", message: "later" } })),
    );
    const known = await failure(new ApiClient(base).get("/forbidden", jobSchema));
    expect(known).toBeInstanceOf(ServerError);
    expect([known.code, known.message, (known as ServerError).status]).toEqual([
      "BULWARK_AUTH_FORBIDDEN",
      "admins only",
      403,
    ]);
    expect(exitCodeFor(known)).toBe(EXIT.API_ERROR);
    const unknown = await failure(new ApiClient(base).get("/newer", jobSchema));
    expect(unknown.message).toBe("BULWARK_FUTURE_THING: later");
    expect(exitCodeFor(unknown)).toBe(EXIT.API_ERROR);
  });

  it("gives up on a server that never answers within the timeout", async () => {
    routes.set("/hang", () => undefined);
    const err = await failure(new ApiClient(base, { kind: "none" }, 300).get("/hang", jobSchema));
    expect(err.code).toBe("BULWARK_CLI_UNREACHABLE");
    expect(err.message).toContain("no answer within 0.3 s");
  });

  it("restore volume sends the restore request from its flags and follows the job with --wait", async () => {
    const bodies: unknown[] = [];
    routes.set("/api/v1/jobs/restore", (req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => {
        body += d.toString();
      });
      req.on("end", () => {
        bodies.push(JSON.parse(body));
        res
          .writeHead(202, { "content-type": "application/json" })
          .end(JSON.stringify({ ...job("QUEUED", 0), kind: "RESTORE" }));
      });
    });
    routes.set(`/api/v1/jobs/${JOB_ID}/events`, (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(
        `event: progress\ndata: ${JSON.stringify({ ...pick(job("FAILED", 10)), errorCode: "BULWARK_RESTORE_TARGET_IN_USE", errorMessage: "mounted" })}\n\n`,
      );
      res.end(`event: end\ndata: ${JSON.stringify({ id: JOB_ID, state: "FAILED" })}\n\n`);
    });
    const out: string[] = [];
    const err: string[] = [];
    const backupId = "6e2a0000-0000-4000-8000-000000000000";
    const code = await run(
      ["--server", base, "restore", "volume", backupId, "--target", "/dev/sdb1", "--delta", "--wait"],
      {
        out: (t) => out.push(t),
        err: (t) => err.push(t),
        env: { XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), "bulwark-cli-")), BULWARK_TOKEN: "bwk_a_b" },
      },
    );
    expect(bodies).toEqual([{ backupId, targetPath: "/dev/sdb1", mode: "delta" }]);
    expect(out[0]).toBe(`queued restore job ${JOB_ID}`);
    expect(code).toBe(EXIT.FAILED);
    expect(err).toEqual([
      `bulwark: BULWARK_CLI_JOB_FAILED: job ${JOB_ID} ended FAILED: BULWARK_RESTORE_TARGET_IN_USE: mounted`,
    ]);
  });

  it("jobs watch re-opens a stream that closed early and exits 0 when the job succeeds", async () => {
    let streams = 0;
    routes.set(`/api/v1/jobs/${JOB_ID}/events`, (_req, res) => {
      streams += 1;
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
      if (streams === 1) {
        // The first stream ends (its maximum life) while the job still runs.
        res.end(`event: progress\ndata: ${JSON.stringify({ ...pick(job("RUNNING", 40)) })}\n\n`);
      } else {
        res.write(": keep-alive\n\n");
        res.write(`event: progress\ndata: ${JSON.stringify(pick(job("SUCCEEDED", 100)))}\n\n`);
        res.end(`event: end\ndata: ${JSON.stringify({ id: JOB_ID, state: "SUCCEEDED" })}\n\n`);
      }
    });
    routes.set(`/api/v1/jobs/${JOB_ID}`, (_req, res) =>
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(job("RUNNING", 40))),
    );
    const out: string[] = [];
    const err: string[] = [];
    const code = await run(["--server", base, "jobs", "watch", JOB_ID], {
      out: (t) => out.push(t),
      err: (t) => err.push(t),
      env: { XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), "bulwark-cli-")), BULWARK_TOKEN: "bwk_a_b" },
    });
    expect(err).toEqual([]);
    expect(code).toBe(0);
    expect(streams).toBe(2);
    expect(out).toEqual([
      `job ${JOB_ID} RUNNING 40.0% 40 B / 100 B`,
      `job ${JOB_ID} SUCCEEDED 100.0% 100 B / 100 B`,
    ]);
  });
});

function pick(j: ReturnType<typeof job>) {
  const { id, state, progress, bytesDone, bytesTotal, errorCode, errorMessage } = j;
  return { id, state, progress, bytesDone, bytesTotal, errorCode, errorMessage };
}
