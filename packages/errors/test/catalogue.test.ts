import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { BulwarkError, defineCodes, errorCatalogue, GrpcStatus } from "../src/index.js";

const docsPath = fileURLToPath(new URL("../../../docs/errors.md", import.meta.url));

/** The rows of docs/errors.md's tables: | `CODE` | http | grpc | meaning | */
function documentedRows(): Map<string, { http: number; grpc: string }> {
  const rows = new Map<string, { http: number; grpc: string }>();
  for (const line of readFileSync(docsPath, "utf8").split("\n")) {
    const m = /^\|\s*`(BULWARK_[A-Z0-9_]+)`\s*\|\s*(\d{3})\s*\|\s*([A-Z_]+)\s*\|/.exec(line);
    if (m) rows.set(m[1]!, { http: Number(m[2]), grpc: m[3]! });
  }
  return rows;
}

describe("error catalogue", () => {
  it("documents every code in docs/errors.md with its HTTP and gRPC status", () => {
    const rows = documentedRows();
    const missing = Object.keys(errorCatalogue).filter((code) => !rows.has(code));
    expect(missing, "codes missing from docs/errors.md").toEqual([]);
    for (const [code, spec] of Object.entries(errorCatalogue)) {
      expect(rows.get(code), code).toEqual({ http: spec.http, grpc: spec.grpc });
    }
  });

  it("documents no code that does not exist", () => {
    const stale = [...documentedRows().keys()].filter((code) => !(code in errorCatalogue));
    expect(stale, "codes in docs/errors.md that the catalogue lacks").toEqual([]);
  });

  it("maps every code to a real HTTP error status and gRPC status", () => {
    for (const [code, spec] of Object.entries(errorCatalogue)) {
      expect(spec.http, code).toBeGreaterThanOrEqual(400);
      expect(spec.http, code).toBeLessThan(600);
      expect(GrpcStatus[spec.grpc], code).toBeGreaterThan(0);
    }
  });

  it("refuses a code that does not follow BULWARK_<AREA>_<WHAT>", () => {
    expect(() =>
      defineCodes("REPO", { BULWARK_REPOX_BAD: { http: 400, grpc: "INTERNAL", summary: "x" } }),
    ).toThrow(/BULWARK_REPO_/);
    expect(() =>
      defineCodes("REPO", { bulwark_repo_bad: { http: 400, grpc: "INTERNAL", summary: "x" } }),
    ).toThrow();
  });

  it("serialises to the stable error body with statuses from the catalogue", () => {
    const err = new BulwarkError("BULWARK_CONFIG_INVALID", "BULWARK_PORT: expected a number", {
      details: { key: "port" },
    });
    expect(err.httpStatus).toBe(500);
    expect(err.grpcStatus).toBe(GrpcStatus.FAILED_PRECONDITION);
    expect(JSON.parse(JSON.stringify(err))).toEqual({
      error: {
        code: "BULWARK_CONFIG_INVALID",
        message: "BULWARK_PORT: expected a number",
        details: { key: "port" },
      },
    });
  });
});
