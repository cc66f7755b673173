import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ControlKeys } from "../src/control/redis-keys.js";
import {
  backupCommand,
  type ControlNode,
  eventually,
  TwoControlNodes,
  testPrefix,
} from "./support/control.js";
import { codeOf, Harness } from "./support/harness.js";

// An agent that was away while its job was cancelled (docs/jobs.md, "Cancel"): when it
// reconnects, the control plane must not resend the job's unacknowledged backup command, and must
// tell it to stop the job if its hello says it is still running it. Other pending commands are
// resent as before. Two real server nodes on one Postgres and Redis.

const h = new Harness();
const nodes = new TwoControlNodes(h, testPrefix("control-cancelled"));
const prefix = nodes.prefix;
let a: ControlNode;
let b: ControlNode;
let redis: Redis;
const open = nodes.open.bind(nodes);
const _connected = nodes.connected.bind(nodes);

beforeAll(async () => {
  await nodes.start("control_cancelled");
  ({ a, b, redis } = nodes);
}, 60_000);

afterEach(() => nodes.closeStreams());

afterAll(() => nodes.stop());

describe("reconnect after a cancel", () => {
  it("drops the cancelled job's pending command, resends the others, and cancels the job the agent still runs", async () => {
    const agent = await h.agent();
    const running = await h.job(agent.id);
    const first = open(a, agent);
    first.hello();
    await first.serverHello();
    first.keepAlive();
    // Received, never acknowledged (the agent went away): both stay pending.
    const cancelledCmd = backupCommand(agent.jobId);
    const liveCmd = backupCommand(randomUUID());
    const outcomes = [
      codeOf(b.plane.dispatcher.dispatch(agent.id, cancelledCmd, { timeoutMs: 500 })),
      codeOf(b.plane.dispatcher.dispatch(agent.id, liveCmd, { timeoutMs: 500 })),
    ];
    await first.command(cancelledCmd.commandId);
    await first.command(liveCmd.commandId);
    expect(await Promise.all(outcomes)).toEqual([
      "BULWARK_CONTROL_COMMAND_TIMEOUT",
      "BULWARK_CONTROL_COMMAND_TIMEOUT",
    ]);
    first.cancel();
    await eventually(async () => !(await a.plane.dispatcher.isOnline(agent.id)));

    // Meanwhile both jobs were cancelled.
    const now = new Date();
    await h.db.catalog.job.updateMany({
      where: { id: { in: [agent.jobId, running] } },
      data: { state: "CANCELLED", cancelRequestedAt: now, finishedAt: now },
    });

    const second = open(b, agent);
    second.hello({ runningJobs: [{ jobId: running, phase: 4, sessionId: "" }] });
    await second.serverHello();
    second.keepAlive();
    const resent = await second.command(liveCmd.commandId);
    expect(resent.command).toEqual(liveCmd.command);
    const stop = await second.next((m) =>
      m.message?.$case === "command" && m.message.value.command?.$case === "cancel"
        ? m.message.value.command.value
        : undefined,
    );
    expect(stop.jobId).toBe(running);
    // Give a (wrong) resend of the cancelled job's command time to arrive.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(second.commands().map((c) => c.commandId)).not.toContain(cancelledCmd.commandId);
    const pending = await redis.hkeys(new ControlKeys(prefix).pending(agent.id));
    expect(pending).not.toContain(cancelledCmd.commandId);
    expect(pending).toContain(liveCmd.commandId);
  });
});
