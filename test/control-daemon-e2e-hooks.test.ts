import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MiB } from "../apps/agent/test/helpers/system.js";
import { eventually } from "../apps/server/test/support/control.js";
import { Harness } from "../apps/server/test/support/harness.js";
import {
  flushPrefix,
  type JobNode,
  jobPrefix,
  policyFor,
  startJobNode,
} from "../apps/server/test/support/job-agent.js";
import { type RunningDaemon, startTestDaemon, stopTestDaemons } from "./support/daemons.js";

// A policy's hooks on a real agent daemon (in-process `bulwark-agent run`, backing up an image
// file) through the real job system: each hook's end and output tails reach the job's own log
// (GET /jobs/:id/log reads these rows) as `agent_log` lines, not only the server log.

const h = new Harness();
let prefix: string;
let node: JobNode;
let dir: string;
const daemons: RunningDaemon[] = [];

beforeAll(async () => {
  await h.setUp("daemon_hooks_log");
  dir = mkdtempSync(join(tmpdir(), "bulwark-daemon-hooks-log-"));
  prefix = jobPrefix("hookslog");
  node = await startJobNode(h, "node-a", prefix, {
    heartbeatIntervalMs: 2_000,
    settings: { lockDurationMs: 30_000, stalledIntervalMs: 30_000, ackTimeoutMs: 30_000 },
  });
}, 120_000);

afterAll(async () => {
  await stopTestDaemons(daemons);
  await node?.stop({ force: true });
  if (prefix) await flushPrefix(prefix);
  await h.tearDown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("policy hooks in the job log", () => {
  it("writes each hook's end and output tails into the job's log, never its environment", async () => {
    const agent = await h.agent();
    const image = join(dir, `${agent.id}.img`);
    writeFileSync(image, randomBytes(4 * MiB));
    daemons.push(startTestDaemon(h, agent, node.control.listener.port, dir, { imageFiles: [image] }));
    const key = `file:${image}`;
    await eventually(
      async () => (await h.db.catalog.volume.count({ where: { agentId: agent.id, key } })) === 1,
      60_000,
    );
    const volume = await h.db.catalog.volume.findFirstOrThrow({ where: { agentId: agent.id, key } });
    const { policy } = await policyFor(h.db.catalog, h, agent.id);
    await h.db.catalog.policy.update({
      where: { id: policy.id },
      data: {
        preHook: "echo quiesced-the-app; echo pre-warning >&2",
        postHook: "echo resumed; seq 1 2000",
      },
    });
    const id = await node.jobs.enqueueBackupNow(agent.id, volume.id, null);
    await eventually(
      async () =>
        ["SUCCEEDED", "FAILED", "CANCELLED", "MISSED"].includes(
          (await h.db.catalog.job.findUniqueOrThrow({ where: { id } })).state,
        ),
      120_000,
    );
    const row = await h.db.catalog.job.findUniqueOrThrow({ where: { id } });
    expect([row.state, row.errorCode]).toEqual(["SUCCEEDED", null]);
    // The post hook's line is sent before the result: it is in the log once the job is final.
    const lines = await h.db.catalog.jobLogEntry.findMany({
      where: { jobId: id, event: "agent_log" },
      orderBy: { seq: "asc" },
    });
    const hooks = lines.filter((l) => (l.data as Record<string, string> | null)?.hookPhase);
    expect(hooks.map((l) => [l.level, (l.data as Record<string, string>).hookPhase])).toEqual([
      ["INFO", "pre"],
      ["INFO", "post"],
    ]);
    expect(hooks[0]?.message).toMatch(/^pre hook 1 \(\/bin\/sh\) exited 0 in \d+ ms/);
    expect(hooks[0]?.message).toContain("stdout:\nquiesced-the-app\n");
    expect(hooks[0]?.message).toContain("stderr:\npre-warning\n");
    expect(hooks[0]?.data).toMatchObject({ hookPhase: "pre", hookIndex: "1", exitCode: "0" });
    // A long output keeps its end (the last numbers), bounded to one job-log line.
    expect(hooks[1]?.message).toContain("stdout:\n…");
    expect(hooks[1]?.message).toMatch(/1999\n2000\n$/);
    expect(hooks[1]!.message.length).toBeLessThanOrEqual(2000);
    for (const l of lines) expect(l.message).not.toMatch(/BULWARK_[A-Z_]+=/);
  }, 240_000);
});
