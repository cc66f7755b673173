// The console's pure helpers: install command, machine risk, job order, byte formatting, roles.
import { type AgentDetail, type Job, jobKindSchema } from "@bulwark/api";
import { describe, expect, it } from "vitest";
import { riskOf, sortJobsFailuresFirst } from "../src/pages/Dashboard";
import { installCommand } from "../src/pages/Machines";
import { can, canControlJob } from "../src/roles";
import { formatBytes } from "../src/ui/format";
import { dayToIso, parseLimit } from "../src/ui/paging";

const volume = (rpo: AgentDetail["volumes"][number]["rpo"], devicePath = "/dev/sda1") => ({
  id: crypto.randomUUID(),
  key: devicePath,
  kind: "PARTITION",
  devicePath,
  mountPoint: null,
  fsType: null,
  label: null,
  sizeBytes: 1,
  gone: false,
  lastBackup: null,
  rpo,
});

function agent(volumes: AgentDetail["volumes"], policy = true): AgentDetail {
  return {
    id: crypto.randomUUID(),
    hostname: "h",
    os: "linux",
    osVersion: null,
    arch: null,
    agentVersion: "0.1.0",
    status: "ACTIVE",
    online: true,
    tags: [],
    groups: [],
    enrolledAt: new Date().toISOString(),
    lastSeenAt: null,
    revokedAt: null,
    machineId: "m",
    volumes,
    effectivePolicy: policy
      ? {
          policyId: crypto.randomUUID(),
          name: "p",
          via: "group",
          groupId: null,
          scheduleCron: "0 1 * * *",
          timezone: "UTC",
          enabled: true,
        }
      : null,
  };
}

describe("console helpers", () => {
  it("puts the token file verbatim between the here-document markers", () => {
    const token = '{\n  "kind": "bulwark-enrollment-token",\n  "token": "bwe_x"\n}\n';
    const cmd = installCommand(token);
    expect(/<<'BULWARK_TOKEN'\n([\s\S]*?)BULWARK_TOKEN\n/.exec(cmd)?.[1]).toBe(token);
    expect(cmd).toContain("bulwark-agent enroll --token-file /root/bulwark-agent.token");
    // The secret never lands on a command line of its own.
    expect(cmd.split("\n").filter((l) => l.includes("bwe_x"))).toEqual(['  "token": "bwe_x"']);
  });

  it("calls a machine at risk for a late volume, or when a policy applies and nothing is backed up", () => {
    expect(riskOf(agent([volume("ok"), volume("late", "/dev/sdb1")]))).toBe(
      "recovery point missed on /dev/sdb1",
    );
    expect(riskOf(agent([volume("none"), volume("none")]))).toBe("no restore point yet");
    // A volume outside the policy's selector has no restore point next to one that has.
    expect(riskOf(agent([volume("ok"), volume("none")]))).toBeNull();
    expect(riskOf(agent([volume("unscheduled")], false))).toBeNull();
  });

  it("orders jobs failures first, then newest first", () => {
    const job = (state: Job["state"], createdAt: string) => ({ state, createdAt }) as Job;
    const sorted = sortJobsFailuresFirst([
      job("SUCCEEDED", "2026-01-02T00:00:00Z"),
      job("FAILED", "2026-01-01T00:00:00Z"),
      job("RUNNING", "2026-01-01T00:00:00Z"),
      job("FAILED", "2026-01-03T00:00:00Z"),
    ]);
    expect(sorted.map((j) => `${j.state} ${j.createdAt.slice(8, 10)}`)).toEqual([
      "FAILED 03",
      "FAILED 01",
      "RUNNING 01",
      "SUCCEEDED 02",
    ]);
  });

  it("formats bytes in binary units", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(32 * 1024 * 1024)).toBe("32 MiB");
  });

  it("keeps the help desk out of admin pages and policy edits but lets it restore", () => {
    expect(can("HELPDESK", "viewAdmin")).toBe(false);
    expect(can("HELPDESK", "editPolicies")).toBe(false);
    expect(can("HELPDESK", "restore")).toBe(true);
    expect(can("AUDITOR", "restore")).toBe(false);
    expect(can("AUDITOR", "viewAdmin")).toBe(true);
  });

  it("offers cancel and retry to whoever may start the job's kind", () => {
    expect(canControlJob("HELPDESK", "RESTORE")).toBe(true);
    expect(canControlJob("HELPDESK", "BACKUP")).toBe(false);
    expect(canControlJob("HELPDESK", "GC")).toBe(false);
    expect(canControlJob("OPERATOR", "VERIFY")).toBe(true);
    expect(canControlJob("ADMIN", "BACKUP")).toBe(true);
    expect(canControlJob("AUDITOR", "RESTORE")).toBe(false);
    // Every kind the API lists: the help desk controls restores only.
    expect(jobKindSchema.options.filter((k) => canControlJob("HELPDESK", k))).toEqual(["RESTORE"]);
    expect(jobKindSchema.options.every((k) => canControlJob("OPERATOR", k))).toBe(true);
  });

  it("takes a page size from the address only within the API's limits", () => {
    expect(parseLimit(null)).toBe(50);
    expect(parseLimit("25")).toBe(25);
    expect(parseLimit("200")).toBe(200);
    expect(parseLimit("201")).toBe(50);
    expect(parseLimit("0")).toBe(50);
    expect(parseLimit("2.5")).toBe(50);
    expect(parseLimit("abc")).toBe(50);
  });

  it("turns day filters into the start of the day, or of the next day for 'to'", () => {
    expect(dayToIso("", "from")).toBeUndefined();
    expect(dayToIso("2026-03-01", "from")).toBe(new Date("2026-03-01T00:00:00").toISOString());
    expect(dayToIso("2026-02-28", "to", true)).toBe(new Date("2026-03-01T00:00:00").toISOString());
    expect(() => dayToIso("2026-13-01", "from")).toThrow(/not a day/);
    expect(() => dayToIso("yesterday", "to", true)).toThrow(/"yesterday" is not a day/);
  });
});
