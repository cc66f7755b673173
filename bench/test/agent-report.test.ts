import { describe, expect, it } from "vitest";
import { agentBytesSent, agentRestorePointId, lastJsonDocument, parseVmHwm } from "../src/agent-report.js";
import { benchDatabaseName, databaseUrlFor } from "../src/tools/bulwark-agent.js";

const STATUS = `Name:\tnode
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t 1234567 kB
VmSize:\t 1200000 kB
VmHWM:\t  181234 kB
VmRSS:\t  150000 kB
Threads:\t11
`;

describe("parseVmHwm", () => {
  it("reads the peak RSS in bytes", () => {
    expect(parseVmHwm(STATUS)).toBe(181234 * 1024);
  });
  it("does not confuse VmRSS or VmPeak for it", () => {
    expect(parseVmHwm("VmPeak:\t 9 kB\nVmHWM:\t 7 kB\nVmRSS:\t 5 kB\n")).toBe(7 * 1024);
  });
  it("throws when the line is missing, never returns 0", () => {
    expect(() => parseVmHwm("Name:\tkthreadd\nState:\tS\n")).toThrow(/VmHWM/);
  });
});

describe("the agent's --json report", () => {
  const report = {
    restorePointId: "rp-1",
    counters: { bytesRead: 10, bytesSent: 4096, chunksSent: 1 },
  };
  const pretty = `${JSON.stringify(report, null, 2)}\n`;
  it("reads counters.bytesSent from a pretty-printed document", () => {
    expect(agentBytesSent(pretty)).toBe(4096);
    expect(agentRestorePointId(pretty)).toBe("rp-1");
  });
  it("skips lines printed before the document", () => {
    expect(agentBytesSent(`warming up\n{ not json\n${pretty}`)).toBe(4096);
    expect(lastJsonDocument("nothing here")).toBeUndefined();
  });
  it("throws when the counter is missing", () => {
    expect(() => agentBytesSent('{"counters": {}}')).toThrow(/bytesSent/);
    expect(() => agentBytesSent("")).toThrow(/bytesSent/);
  });
});

describe("the per-run catalog database", () => {
  it("replaces only the database of the admin URL", () => {
    expect(databaseUrlFor("postgresql://postgres@127.0.0.1:5432/postgres", "bulwark_bench_ab")).toBe(
      "postgresql://postgres@127.0.0.1:5432/bulwark_bench_ab",
    );
    expect(databaseUrlFor("postgresql://u:p@db:5433/postgres?sslmode=disable", "x")).toBe(
      "postgresql://u:p@db:5433/x?sslmode=disable",
    );
  });
  it("names a fresh, plain identifier every time", () => {
    const a = benchDatabaseName();
    expect(a).toMatch(/^bulwark_bench_[0-9a-f]{12}$/);
    expect(benchDatabaseName()).not.toBe(a);
  });
});
