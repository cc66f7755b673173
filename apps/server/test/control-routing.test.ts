import { DisconnectReason } from "@bulwark/protocol";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ControlKeys } from "../src/control/redis-keys.js";
import {
  backupCommand,
  type ControlNode,
  eventually,
  startControlNode,
  TwoControlNodes,
  testPrefix,
} from "./support/control.js";
import { codeOf, Harness } from "./support/harness.js";

// Two server nodes in one process, each with its own agent listener, control plane and Redis
// connections, on one Postgres and one Redis: commands dispatched on one node reach agents whose
// stream the other node holds, acks come back, supersede works across nodes, and unacknowledged
// commands survive a reconnect to the other node.

const h = new Harness();
const nodes = new TwoControlNodes(h, testPrefix("control-routing"));
const prefix = nodes.prefix;
let a: ControlNode;
let b: ControlNode;
let redis: Redis;
const _open = nodes.open.bind(nodes);
const connected = nodes.connected.bind(nodes);

beforeAll(async () => {
  await nodes.start("control_routing");
  ({ a, b, redis } = nodes);
}, 60_000);

afterEach(() => nodes.closeStreams());

afterAll(() => nodes.stop());

describe("dispatch across nodes", () => {
  it("delivers a command dispatched on node B to the agent connected to node A, and returns the ack to B", async () => {
    const agent = await h.agent();
    const s = await connected(a, agent);
    expect(await b.plane.dispatcher.isOnline(agent.id)).toBe(true);
    const cmd = backupCommand(agent.jobId);
    const acked = b.plane.dispatcher.dispatch(agent.id, cmd);
    const got = await s.command(cmd.commandId);
    expect(got.command).toEqual(cmd.command);
    s.ack(cmd.commandId, true);
    expect(await acked).toEqual({ commandId: cmd.commandId, accepted: true, error: undefined });
    // Acknowledged: nothing stays pending.
    expect(await redis.hlen(new ControlKeys(prefix).pending(agent.id))).toBe(0);
  });

  it("returns a refusal (accepted = false, error) as the agent sent it", async () => {
    const agent = await h.agent();
    const s = await connected(b, agent);
    const cmd = backupCommand(agent.jobId, "no-such-volume");
    const acked = a.plane.dispatcher.dispatch(agent.id, cmd);
    await s.command(cmd.commandId);
    s.send({
      $case: "commandAck",
      value: {
        commandId: cmd.commandId,
        accepted: false,
        error: { code: "BULWARK_CONTROL_VOLUME_UNKNOWN", message: "no volume no-such-volume", details: {} },
      },
    });
    const ack = await acked;
    expect(ack.accepted).toBe(false);
    expect(ack.error?.code).toBe("BULWARK_CONTROL_VOLUME_UNKNOWN");
  });

  it("fails promptly with AGENT_OFFLINE for an agent no node holds", async () => {
    const agent = await h.agent();
    const started = Date.now();
    expect(await codeOf(a.plane.dispatcher.dispatch(agent.id, backupCommand(agent.jobId)))).toBe(
      "BULWARK_CONTROL_AGENT_OFFLINE",
    );
    // Promptly: well before the 30 s acknowledgement timeout a waited-for command would run into
    // (a loaded 2-core machine can take a second or two for the Redis round trips).
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await a.plane.dispatcher.isOnline(agent.id)).toBe(false);
  });

  it("fails promptly with AGENT_OFFLINE when the holding node is gone but its entry has not expired", async () => {
    const agent = await h.agent();
    // What a node that crashed a moment ago leaves: an entry naming it, nobody on its channel.
    await redis.set(
      new ControlKeys(prefix).holder(agent.id),
      JSON.stringify({ node: "node-crashed", stream: "x" }),
      "PX",
      60_000,
    );
    const started = Date.now();
    expect(await codeOf(b.plane.dispatcher.dispatch(agent.id, backupCommand(agent.jobId)))).toBe(
      "BULWARK_CONTROL_AGENT_OFFLINE",
    );
    expect(Date.now() - started).toBeLessThan(10_000); // not the 30 s acknowledgement timeout
    // Not left pending: the caller was told it was not delivered.
    expect(await redis.hlen(new ControlKeys(prefix).pending(agent.id))).toBe(0);
  });

  it("refuses a command without an ID, body or job ID", async () => {
    const agent = await h.agent();
    await connected(a, agent);
    expect(await codeOf(a.plane.dispatcher.dispatch(agent.id, { commandId: "", command: undefined }))).toBe(
      "BULWARK_CONTROL_COMMAND_INVALID",
    );
    expect(
      await codeOf(a.plane.dispatcher.dispatch(agent.id, { ...backupCommand(""), commandId: "c1" })),
    ).toBe("BULWARK_CONTROL_COMMAND_INVALID");
  });
});

describe("supersede across nodes", () => {
  it("a new stream on node B ends the agent's stream on node A with SUPERSEDED, and commands follow", async () => {
    const agent = await h.agent();
    const onA = await connected(a, agent);
    const onB = await connected(b, agent);
    const d = await onA.disconnect();
    expect(d.reason).toBe(DisconnectReason.DISCONNECT_REASON_SUPERSEDED);
    await onA.done;
    const row = await h.db.catalog.agent.findUniqueOrThrow({ where: { id: agent.id } });
    expect(row.connectedNode).toBe("node-b");
    // A dispatch from A now goes to B's stream.
    const cmd = backupCommand(agent.jobId);
    const acked = a.plane.dispatcher.dispatch(agent.id, cmd);
    await onB.command(cmd.commandId);
    onB.ack(cmd.commandId);
    expect((await acked).accepted).toBe(true);
    expect(a.sink.presence.filter((p) => p.agentId === agent.id && p.state === "offline")).toEqual([]);
  });
});

describe("at-least-once delivery", () => {
  it("resends an unacknowledged command after the agent reconnects to the other node, until it is acknowledged", async () => {
    const agent = await h.agent();
    const first = await connected(a, agent);
    const cmd = backupCommand(agent.jobId);
    // The agent receives it but never acknowledges (it crashed right after).
    const timedOut = codeOf(b.plane.dispatcher.dispatch(agent.id, cmd, { timeoutMs: 500 }));
    await first.command(cmd.commandId);
    expect(await timedOut).toBe("BULWARK_CONTROL_COMMAND_TIMEOUT");
    first.cancel();
    await eventually(async () => !(await a.plane.dispatcher.isOnline(agent.id)));

    // It reconnects to node B and gets the command again right after the hello.
    const second = await connected(b, agent);
    const again = await second.command(cmd.commandId);
    expect(again.command).toEqual(cmd.command);
    second.ack(cmd.commandId);
    await eventually(async () => (await redis.hlen(new ControlKeys(prefix).pending(agent.id))) === 0);
    second.cancel();
    await eventually(async () => !(await a.plane.dispatcher.isOnline(agent.id)));

    // Acknowledged now: a further reconnect does not get it a third time.
    const third = await connected(a, agent);
    third.heartbeat();
    await new Promise((r) => setTimeout(r, 300));
    expect(third.commands().map((c) => c.commandId)).not.toContain(cmd.commandId);
  });

  it("a crashed node's holder entries expire, and meanwhile dispatch fails promptly with AGENT_OFFLINE", async () => {
    const c = await startControlNode(h, "node-c", prefix, { heartbeatIntervalMs: 1000 });
    try {
      const agent = await h.agent();
      await connected(c, agent);
      // Node C loses Redis for good (as when it crashes): it can neither refresh nor release.
      c.redis.disconnect();
      c.subscriber.disconnect();
      expect(await b.plane.dispatcher.isOnline(agent.id)).toBe(true); // the entry is still there
      expect(await codeOf(b.plane.dispatcher.dispatch(agent.id, backupCommand(agent.jobId)))).toBe(
        "BULWARK_CONTROL_AGENT_OFFLINE",
      );
      // Failed while the entry was still there (not by waiting for it to expire): a state check
      // instead of a 1 s bound on the dispatch, which a loaded machine could overrun.
      expect(await b.plane.dispatcher.isOnline(agent.id)).toBe(true);
      // Four heartbeat intervals after the last refresh the entry is gone.
      await eventually(async () => !(await b.plane.dispatcher.isOnline(agent.id)), 8000);
      // And the surviving nodes' presence sweep clears connectedNode and reports it offline, once.
      await eventually(
        async () =>
          (await h.db.catalog.agent.findUniqueOrThrow({ where: { id: agent.id } })).connectedNode === null,
        5000,
      );
      // The sweep clears connectedNode, then tells the presence listener: wait for the telling too.
      const offline = () =>
        [...a.sink.presence, ...b.sink.presence].filter(
          (p) => p.agentId === agent.id && p.state === "offline",
        );
      await eventually(async () => offline().length > 0, 5000);
      expect(offline()).toHaveLength(1);
    } finally {
      await c.stop();
    }
  });
});

describe("revocation across nodes", () => {
  it("closeAgentStreams on node B closes the agent's stream on node A with REVOKED", async () => {
    const agent = await h.agent();
    const s = await connected(a, agent);
    await b.plane.closeAgentStreams(agent.id, "REVOKED");
    const d = await s.disconnect();
    expect(d.reason).toBe(DisconnectReason.DISCONNECT_REASON_REVOKED);
    await s.done;
    expect((s.error as { code?: string }).code).toBe("BULWARK_INGEST_AGENT_REVOKED");
  });
});
