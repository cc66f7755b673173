import {
  AGENT_CHANNEL_OPTIONS,
  ControlServiceClient,
  DisconnectReason,
  JobOutcome,
  JobPhase,
  LogLevel,
  PROTOCOL_VERSION,
} from "@bulwark/protocol";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type ControlNode,
  controlClient,
  eventually,
  startControlNode,
  TestControlStream,
  testPrefix,
} from "./support/control.js";
import { Harness } from "./support/harness.js";

// The ControlService on one real node (grpc-js over mTLS on loopback, Postgres, Redis): the
// handshake and what it refuses, inventory into Volume rows, heartbeats and offline detection,
// supersede within a node, revocation, and job events reaching the sink.

const GiB = 2 ** 30;
const h = new Harness();
let node: ControlNode;
const prefix = testPrefix("control-stream");
const streams: TestControlStream[] = [];
const clients: ControlServiceClient[] = [];

function open(agent: Awaited<ReturnType<Harness["agent"]>>, metadata?: Metadata): TestControlStream {
  const client = controlClient(h, node, agent);
  clients.push(client);
  const s = new TestControlStream(client, metadata);
  streams.push(s);
  return s;
}

beforeAll(async () => {
  await h.setUp("control_stream");
  node = await startControlNode(h, "node-a", prefix, { helloTimeoutMs: 500, heartbeatIntervalMs: 300 });
}, 60_000);

afterEach(() => {
  for (const s of streams.splice(0)) if (!s.ended) s.cancel();
  for (const c of clients.splice(0)) c.close();
});

afterAll(async () => {
  await node?.stop();
  await h.tearDown();
});

describe("handshake", () => {
  it("answers AgentHello with ServerHello and records the agent as connected", async () => {
    const agent = await h.agent();
    const s = open(agent);
    s.hello({ hostname: "renamed-host", agentVersion: "0.2.0" });
    const hello = await s.serverHello();
    expect(hello.agentId).toBe(agent.id);
    expect(hello.serverNode).toBe("node-a");
    expect(hello.negotiatedMinor).toBe(PROTOCOL_VERSION.minor);
    expect(hello.heartbeatIntervalMs).toBe(300);
    expect(s.received[0]?.seq).toBe(1);
    const row = await h.db.catalog.agent.findUniqueOrThrow({ where: { id: agent.id } });
    expect(row.connectedNode).toBe("node-a");
    expect(row.hostname).toBe("renamed-host");
    expect(row.agentVersion).toBe("0.2.0");
    expect(row.lastSeenAt).not.toBeNull();
    expect(await node.plane.dispatcher.isOnline(agent.id)).toBe(true);
    expect(node.sink.presence).toContainEqual({ agentId: agent.id, state: "online" });
  });

  it("closes a stream that sends no hello within the timeout", async () => {
    const s = open(await h.agent());
    const d = await s.disconnect();
    expect(d.reason).toBe(DisconnectReason.DISCONNECT_REASON_PROTOCOL_VIOLATION);
    await s.done;
    expect((s.error as { code?: string }).code).toBe("BULWARK_CONTROL_HELLO_TIMEOUT");
  });

  it("refuses a first message that is not AgentHello", async () => {
    const s = open(await h.agent());
    s.heartbeat();
    const d = await s.disconnect();
    expect(d.reason).toBe(DisconnectReason.DISCONNECT_REASON_PROTOCOL_VIOLATION);
    await s.done;
    expect((s.error as { code?: string }).code).toBe("BULWARK_PROTO_MALFORMED");
    expect(s.error?.message).toMatch(/first message must be AgentHello/);
  });

  it("refuses a message whose seq is out of order", async () => {
    const s = open(await h.agent());
    s.hello();
    await s.serverHello();
    s.send({ $case: "heartbeat", value: { agentTime: new Date(), runningJobIds: [] } }, 7);
    await s.done;
    expect((s.error as { code?: string }).code).toBe("BULWARK_PROTO_MALFORMED");
    expect(s.error?.message).toMatch(/seq 7 where 2 was expected/);
  });

  it("refuses a message with no oneof member and a second hello", async () => {
    const s = open(await h.agent());
    s.send(undefined);
    await s.done;
    expect((s.error as { code?: string }).code).toBe("BULWARK_PROTO_MALFORMED");

    const t = open(await h.agent());
    t.hello();
    await t.serverHello();
    t.hello();
    await t.done;
    expect(t.error?.message).toMatch(/only be the first message/);
  });

  it("refuses a missing protocol header with PROTOCOL_UNSUPPORTED and the supported range", async () => {
    const s = open(await h.agent(), new Metadata());
    const d = await s.disconnect();
    expect(d.reason).toBe(DisconnectReason.DISCONNECT_REASON_PROTOCOL_UNSUPPORTED);
    expect(d.maxProtocolVersion).toBe(`${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor}`);
    expect(d.minProtocolVersion).toBe(`${PROTOCOL_VERSION.major}.0`);
    await s.done;
    expect((s.error as { code?: string }).code).toBe("BULWARK_PROTO_VERSION_UNSUPPORTED");
  });

  it("refuses a hello of another protocol major and one with control characters", async () => {
    const s = open(await h.agent());
    s.hello({ protocolVersion: "2.0" });
    await s.done;
    expect((s.error as { code?: string }).code).toBe("BULWARK_PROTO_VERSION_UNSUPPORTED");

    const t = open(await h.agent());
    t.hello({ hostname: "evil\nhost" });
    await t.done;
    expect((t.error as { code?: string }).code).toBe("BULWARK_PROTO_MALFORMED");
  });

  it("ends a stream whose bytes are not a ConnectRequest", async () => {
    const agent = await h.agent();
    const raw = new ControlServiceClient(`127.0.0.1:${node.listener.port}`, h.credentialsFor(agent), {
      ...AGENT_CHANNEL_OPTIONS,
      "grpc.ssl_target_name_override": "localhost",
      "grpc.default_authority": "localhost",
    });
    clients.push(raw);
    const call = raw.makeBidiStreamRequest(
      "/bulwark.v1.ControlService/Connect",
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    const status = new Promise<number>((resolve) =>
      call.on("error", (e: { code: number }) => resolve(e.code)),
    );
    call.on("data", () => undefined);
    call.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    expect(await status).toBeGreaterThan(0);
  });

  it("refuses a certificate the catalog does not know", async () => {
    const s = open(await h.agent({ register: false }));
    s.hello();
    await s.done;
    expect((s.error as { code?: string }).code).toBe("BULWARK_INGEST_UNAUTHENTICATED");
  });
});

describe("inventory", () => {
  it("creates Volume rows, updates them and marks vanished ones gone", async () => {
    const agent = await h.agent();
    const s = open(agent);
    s.hello();
    await s.serverHello();
    s.keepAlive();
    const volume = (id: string, devicePath: string, sizeBytes: number, mount: string[] = []) => ({
      id,
      devicePath,
      sizeBytes,
      filesystem: { type: "ext4", uuid: id, label: "data", usedBytes: 1, blockSize: 4096 },
      mountPoints: mount,
      diskId: "disk:sda",
      snapshotProviders: ["device"],
      lvm: undefined,
    });
    const disk = {
      id: "disk:sda",
      devicePath: "/dev/sda",
      model: "QEMU",
      serial: "",
      sizeBytes: 10 * GiB,
      logicalSectorSize: 512,
      physicalSectorSize: 512,
      partitionTable: 3,
      partitionTableId: "",
      partitions: [],
      removable: false,
      rotational: false,
    };
    s.send({
      $case: "inventory",
      value: {
        collectedAt: new Date(),
        disks: [disk],
        volumes: [
          volume("uuid-root", "/dev/sda1", 5 * GiB, ["/"]),
          volume("uuid-data", "/dev/sda2", 4 * GiB),
        ],
      },
    });
    await eventually(async () => (await h.db.catalog.volume.count({ where: { agentId: agent.id } })) === 3);
    const rows = await h.db.catalog.volume.findMany({
      where: { agentId: agent.id },
      orderBy: { key: "asc" },
    });
    expect(rows.map((r) => [r.key, r.kind, r.devicePath, r.mountPoint, Number(r.sizeBytes)])).toEqual([
      ["disk:sda", "DISK", "/dev/sda", null, 10 * GiB],
      ["uuid-data", "PARTITION", "/dev/sda2", null, 4 * GiB],
      ["uuid-root", "PARTITION", "/dev/sda1", "/", 5 * GiB],
    ]);

    // The data volume vanished, root grew and moved.
    s.send({
      $case: "inventory",
      value: {
        collectedAt: new Date(),
        disks: [disk],
        volumes: [volume("uuid-root", "/dev/sdb1", 6 * GiB, ["/"])],
      },
    });
    await eventually(
      async () =>
        (await h.db.catalog.volume.findFirst({ where: { agentId: agent.id, key: "uuid-data" } }))?.goneAt !=
        null,
    );
    const root = await h.db.catalog.volume.findFirstOrThrow({
      where: { agentId: agent.id, key: "uuid-root" },
    });
    expect([root.devicePath, Number(root.sizeBytes), root.goneAt]).toEqual(["/dev/sdb1", 6 * GiB, null]);

    // It comes back: no longer gone.
    s.send({
      $case: "inventory",
      value: { collectedAt: new Date(), disks: [disk], volumes: [volume("uuid-data", "/dev/sda2", 4 * GiB)] },
    });
    await eventually(
      async () =>
        (await h.db.catalog.volume.findFirst({ where: { agentId: agent.id, key: "uuid-data" } }))?.goneAt ===
        null,
    );
  });

  it("refuses duplicate volume IDs and over-long paths", async () => {
    const s = open(await h.agent());
    s.hello();
    await s.serverHello();
    const v = {
      id: "same",
      devicePath: "/dev/x",
      sizeBytes: 1,
      filesystem: undefined,
      mountPoints: [],
      diskId: "",
      snapshotProviders: [],
      lvm: undefined,
    };
    s.send({ $case: "inventory", value: { collectedAt: new Date(), disks: [], volumes: [v, v] } });
    await s.done;
    expect(s.error?.message).toMatch(/appears twice/);

    const t = open(await h.agent());
    t.hello();
    await t.serverHello();
    t.send({
      $case: "inventory",
      value: { collectedAt: new Date(), disks: [], volumes: [{ ...v, devicePath: "/".repeat(5000) }] },
    });
    await t.done;
    expect((t.error as { code?: string }).code).toBe("BULWARK_PROTO_MALFORMED");
  });
});

describe("heartbeats and presence", () => {
  it("keeps a heartbeating agent online and marks a silent one offline", async () => {
    const agent = await h.agent();
    const s = open(agent);
    s.hello();
    await s.serverHello();
    // Heartbeats every 200 ms for 1.2 s: well past the 900 ms offline limit, still online.
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 200));
      s.heartbeat();
    }
    expect(s.ended).toBe(false);
    expect(await node.plane.dispatcher.isOnline(agent.id)).toBe(true);
    // Silence: three intervals (900 ms) later the server ends the stream and the agent is offline.
    const silentSince = Date.now();
    await s.done;
    expect(Date.now() - silentSince).toBeGreaterThanOrEqual(700);
    expect((s.error as { code?: string }).code).toBe("BULWARK_CONTROL_HEARTBEAT_MISSED");
    await eventually(async () => !(await node.plane.dispatcher.isOnline(agent.id)));
    await eventually(
      async () =>
        (await h.db.catalog.agent.findUniqueOrThrow({ where: { id: agent.id } })).connectedNode === null,
    );
    // The node clears connectedNode, then tells the presence listener: wait for the telling too.
    const presence = () => node.sink.presence.filter((p) => p.agentId === agent.id);
    await eventually(() => presence().some((p) => p.state === "offline"));
    expect(presence()).toEqual([
      { agentId: agent.id, state: "online" },
      { agentId: agent.id, state: "offline" },
    ]);
  });

  it("supersedes the older stream of the same agent on the same node", async () => {
    const agent = await h.agent();
    const first = open(agent);
    first.hello();
    await first.serverHello();
    const second = open(agent);
    second.hello();
    await second.serverHello();
    // Heartbeats from here: the checks below are about supersede, not about the 900 ms limit.
    second.keepAlive();
    const d = await first.disconnect();
    expect(d.reason).toBe(DisconnectReason.DISCONNECT_REASON_SUPERSEDED);
    await first.done;
    expect(first.error).toBeUndefined(); // ended with OK after the Disconnect
    await new Promise((r) => setTimeout(r, 100));
    expect(second.ended).toBe(false);
    expect(await node.plane.dispatcher.isOnline(agent.id)).toBe(true);
    expect((await h.db.catalog.agent.findUniqueOrThrow({ where: { id: agent.id } })).connectedNode).toBe(
      "node-a",
    );
    expect(node.sink.presence.filter((p) => p.agentId === agent.id && p.state === "offline")).toEqual([]);
  });
});

describe("revocation", () => {
  it("closeAgentStreams ends the stream with REVOKED and PERMISSION_DENIED", async () => {
    const agent = await h.agent();
    const s = open(agent);
    s.hello();
    await s.serverHello();
    await node.plane.closeAgentStreams(agent.id, "REVOKED");
    const d = await s.disconnect();
    expect(d.reason).toBe(DisconnectReason.DISCONNECT_REASON_REVOKED);
    await s.done;
    expect((s.error as { code?: string }).code).toBe("BULWARK_INGEST_AGENT_REVOKED");
    await eventually(async () => !(await node.plane.dispatcher.isOnline(agent.id)));
  });

  it("a revoked certificate loses its stream at the next heartbeat even if nobody closed it", async () => {
    const agent = await h.agent();
    const s = open(agent);
    s.hello();
    await s.serverHello();
    await h.db.catalog.agentCertificate.updateMany({
      where: { agentId: agent.id },
      data: { revokedAt: new Date() },
    });
    s.heartbeat();
    const d = await s.disconnect();
    expect(d.reason).toBe(DisconnectReason.DISCONNECT_REASON_REVOKED);
    await s.done;
    expect((s.error as { code?: string }).code).toBe("BULWARK_INGEST_AGENT_REVOKED");
  });
});

describe("job events", () => {
  it("hands progress and results to the sink with the certificate's agent ID, and accepts logs", async () => {
    const agent = await h.agent();
    const s = open(agent);
    s.hello();
    await s.serverHello();
    s.keepAlive(); // the stream must still be open at the end, however slow the sink is
    s.send({
      $case: "jobProgress",
      value: {
        jobId: agent.jobId,
        phase: JobPhase.JOB_PHASE_TRANSFER,
        bytesDone: 10,
        bytesTotal: 100,
        bytesTransferred: 5,
        rateBytesPerSecond: 1,
      },
    });
    for (let i = 0; i < 50; i++)
      s.send({
        $case: "log",
        value: {
          time: new Date(),
          level: LogLevel.LOG_LEVEL_INFO,
          message: `line ${i}`,
          jobId: "",
          fields: {},
        },
      });
    s.send({
      $case: "jobResult",
      value: {
        jobId: agent.jobId,
        outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED,
        restorePointId: "rp",
        error: undefined,
        startedAt: new Date(),
        finishedAt: new Date(),
        capture: undefined,
        restore: undefined,
        attempt: 0,
      },
    });
    await eventually(() => node.sink.results.some((r) => r.result.jobId === agent.jobId));
    expect(node.sink.progressEvents.find((p) => p.progress.jobId === agent.jobId)).toMatchObject({
      agentId: agent.id,
      progress: { bytesDone: 10, bytesTotal: 100 },
    });
    expect(node.sink.results.find((r) => r.result.jobId === agent.jobId)?.agentId).toBe(agent.id);
    expect(s.ended).toBe(false);
  });

  it("refuses a result with no outcome", async () => {
    const s = open(await h.agent());
    s.hello();
    await s.serverHello();
    s.send({
      $case: "jobResult",
      value: {
        jobId: "j",
        outcome: JobOutcome.JOB_OUTCOME_UNSPECIFIED,
        restorePointId: "",
        error: undefined,
        startedAt: undefined,
        finishedAt: undefined,
        capture: undefined,
        restore: undefined,
        attempt: 0,
      },
    });
    await s.done;
    expect(s.error?.message).toMatch(/outcome/);
  });
});
