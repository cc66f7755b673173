import { randomBytes, randomUUID } from "node:crypto";
import {
  type Command,
  type CommandAck,
  type ConnectRequest,
  type ConnectResponse,
  ControlServiceClient,
  fromServiceError,
  type JobProgress,
  type JobResult,
  PROTOCOL_VERSION_STRING,
  protocolMetadata,
} from "@bulwark/protocol";
import type { ClientDuplexStream, Metadata, ServiceError } from "@grpc/grpc-js";
import { Redis } from "ioredis";
import pino from "pino";
import type { AgentPresenceListener, JobEventSink } from "../../src/control/contracts.js";
import { ControlPlane, type ControlPlaneOptions } from "../../src/control/control-plane.js";
import { CatalogIdentityResolver } from "../../src/grpc/identity.js";
import { type AgentListener, startAgentListener } from "../../src/grpc/server.js";
import { agentListenerCredentials } from "../../src/grpc/tls.js";
import { RepositoryRegistry } from "../../src/repositories/registry.js";
import type { Harness } from "./harness.js";
import type { KeyPair } from "./pki.js";

// The control-stream tests' pieces, all real: server nodes (agent listener + control plane on
// the harness's Postgres and the local Redis, under a key prefix of the test file's own), a
// JobEventSink and presence listener that record, and a raw control-stream client.

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/** A Redis key prefix no other test file or run shares. */
export function testPrefix(label: string): string {
  return `bulwark-test:${label}:${randomBytes(4).toString("hex")}:`;
}

export class RecordingSink implements JobEventSink, AgentPresenceListener {
  progressEvents: { agentId: string; progress: JobProgress }[] = [];
  results: { agentId: string; result: JobResult }[] = [];
  presence: { agentId: string; state: "online" | "offline" }[] = [];

  async progress(agentId: string, progress: JobProgress): Promise<void> {
    this.progressEvents.push({ agentId, progress });
  }

  async result(agentId: string, result: JobResult): Promise<void> {
    this.results.push({ agentId, result });
  }

  online(agentId: string): void {
    this.presence.push({ agentId, state: "online" });
  }

  offline(agentId: string): void {
    this.presence.push({ agentId, state: "offline" });
  }
}

export interface ControlNode {
  name: string;
  plane: ControlPlane;
  listener: AgentListener;
  sink: RecordingSink;
  redis: Redis;
  subscriber: Redis;
  registry: RepositoryRegistry;
  stop(): Promise<void>;
}

/** One server node: its own Redis connections, control plane and agent listener on a free port. */
export async function startControlNode(
  h: Harness,
  name: string,
  prefix: string,
  opts: Partial<ControlPlaneOptions> = {},
  /** A fixed port, e.g. to restart a node where its agents reconnect; default any free port. */
  port = 0,
): Promise<ControlNode> {
  const redis = new Redis(REDIS_URL);
  const subscriber = new Redis(REDIS_URL);
  const sink = new RecordingSink();
  const identity = new CatalogIdentityResolver(h.db.catalog);
  const log = pino({ level: process.env.BULWARK_TEST_LOG ?? "silent" }).child({ node: name });
  const plane = new ControlPlane({
    catalog: h.db.catalog,
    identity,
    redis,
    subscriber,
    node: name,
    sink,
    presence: sink,
    serverVersion: "0.0.0-test",
    log,
    keyPrefix: prefix,
    ...opts,
  });
  await plane.start();
  const registry = new RepositoryRegistry({ catalog: h.db.catalog, secret: h.secret, threads: 2 });
  const listener = await startAgentListener({
    catalog: h.db.catalog,
    repositories: registry,
    identity,
    credentials: agentListenerCredentials({
      certChain: h.server.cert,
      privateKey: h.server.key,
      agentCa: h.ca.cert,
    }),
    host: "127.0.0.1",
    port,
    idleTimeoutSeconds: 3600,
    sweepIntervalSeconds: 3600,
    log,
    control: plane,
  });
  let stopped = false;
  return {
    name,
    plane,
    listener,
    sink,
    redis,
    subscriber,
    registry,
    async stop() {
      if (stopped) return;
      stopped = true;
      await listener.close();
      await registry.close();
      redis.disconnect();
      subscriber.disconnect();
    },
  };
}

/** A control stream as a test drives it: send messages with seq, await the next server message. */
export class TestControlStream {
  readonly call: ClientDuplexStream<ConnectRequest, ConnectResponse>;
  readonly received: ConnectResponse[] = [];
  private seq = 0;
  private waiters: (() => void)[] = [];
  ended = false;
  error: Error | undefined;
  readonly done: Promise<void>;

  constructor(
    readonly client: ControlServiceClient,
    metadata: Metadata = protocolMetadata(),
  ) {
    this.call = client.connect(metadata);
    this.call.on("data", (m: ConnectResponse) => {
      this.received.push(m);
      this.wake();
    });
    this.done = new Promise((resolve) => {
      this.call.on("error", (err: ServiceError) => {
        this.error = fromServiceError(err);
        this.ended = true;
        this.wake();
        resolve();
      });
      this.call.on("end", () => {
        this.ended = true;
        this.wake();
        resolve();
      });
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(message: ConnectRequest["message"], seq?: number): void {
    this.call.write({ seq: seq ?? ++this.seq, message });
  }

  hello(
    extra: Partial<NonNullable<Extract<ConnectRequest["message"], { $case: "hello" }>>["value"]> = {},
  ): void {
    this.send({
      $case: "hello",
      value: {
        protocolVersion: PROTOCOL_VERSION_STRING,
        agentVersion: "0.1.0",
        capabilities: [],
        runningJobs: [],
        hostname: "test-host",
        agentTime: new Date(),
        ...extra,
      },
    });
  }

  /** Heartbeats every `everyMs` until the stream ends (for tests that run longer than the offline limit). */
  keepAlive(everyMs = 100): void {
    const timer = setInterval(() => {
      if (this.ended) clearInterval(timer);
      else this.heartbeat();
    }, everyMs);
    void this.done.then(() => clearInterval(timer));
  }

  heartbeat(): void {
    this.send({ $case: "heartbeat", value: { agentTime: new Date(), runningJobIds: [] } });
  }

  ack(commandId: string, accepted = true): void {
    const value: CommandAck = { commandId, accepted, error: undefined };
    this.send({ $case: "commandAck", value });
  }

  /** Waits for a server message matching `pick` (from the start of the stream). */
  async next<T>(pick: (m: ConnectResponse) => T | undefined, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let from = 0;
    for (;;) {
      for (; from < this.received.length; from++) {
        const v = pick(this.received[from]!);
        if (v !== undefined) {
          from++;
          return v;
        }
      }
      if (this.ended)
        throw new Error(`stream ended (${this.error?.message ?? "ok"}) before the expected message`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timed out waiting for a server message");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  serverHello() {
    return this.next((m) => (m.message?.$case === "hello" ? m.message.value : undefined));
  }

  disconnect() {
    return this.next((m) => (m.message?.$case === "disconnect" ? m.message.value : undefined));
  }

  commands(): Command[] {
    return this.received.flatMap((m) => (m.message?.$case === "command" ? [m.message.value] : []));
  }

  command(commandId: string) {
    return this.next((m) =>
      m.message?.$case === "command" && m.message.value.commandId === commandId ? m.message.value : undefined,
    );
  }

  end(): void {
    this.call.end();
  }

  cancel(): void {
    this.call.cancel();
  }
}

export function controlClient(h: Harness, node: ControlNode, agent: { tls: KeyPair }): ControlServiceClient {
  return new ControlServiceClient(
    `127.0.0.1:${node.listener.port}`,
    h.credentialsFor(agent),
    h.channelOptions(),
  );
}

/**
 * Polls `check` until it returns true (for effects that land asynchronously: catalog rows, Redis).
 * The default deadline is generous because it costs nothing when the condition comes: a loaded
 * 2-core CI machine can take seconds for what takes milliseconds here.
 */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A backup command for a test stream (the agent side is the test's: any job and volume ID). */
export function backupCommand(jobId: string, volumeId = "vol-1"): Command {
  return {
    commandId: randomUUID(),
    command: {
      $case: "backup",
      value: {
        jobId,
        target: { $case: "volumeId", value: volumeId },
        policy: undefined,
        deadline: undefined,
        attempt: 0,
      },
    },
  };
}

type HarnessAgent = Awaited<ReturnType<Harness["agent"]>>;

/**
 * Two control nodes (heartbeat 1 s: holder entries live 4 s without one) on the harness's Postgres
 * and the local Redis under one prefix, the streams a test opens (closed after each test) and a
 * Redis connection for looking at the control keys.
 */
export class TwoControlNodes {
  a!: ControlNode;
  b!: ControlNode;
  redis!: Redis;
  private readonly streams: TestControlStream[] = [];
  private readonly clients: ControlServiceClient[] = [];

  constructor(
    private readonly h: Harness,
    readonly prefix: string,
  ) {}

  async start(database: string): Promise<void> {
    await this.h.setUp(database);
    this.a = await startControlNode(this.h, "node-a", this.prefix, { heartbeatIntervalMs: 1000 });
    this.b = await startControlNode(this.h, "node-b", this.prefix, { heartbeatIntervalMs: 1000 });
    this.redis = new Redis(REDIS_URL);
  }

  /** A stream to `node` as `agent`, not yet greeted. */
  open(node: ControlNode, agent: HarnessAgent): TestControlStream {
    const client = controlClient(this.h, node, agent);
    this.clients.push(client);
    const s = new TestControlStream(client);
    this.streams.push(s);
    return s;
  }

  /** A stream past its hello, kept alive. */
  async connected(node: ControlNode, agent: HarnessAgent): Promise<TestControlStream> {
    const s = this.open(node, agent);
    s.hello();
    await s.serverHello();
    s.keepAlive();
    return s;
  }

  closeStreams(): void {
    for (const s of this.streams.splice(0)) if (!s.ended) s.cancel();
    for (const c of this.clients.splice(0)) c.close();
  }

  async stop(): Promise<void> {
    this.closeStreams();
    await this.a?.stop();
    await this.b?.stop();
    if (this.redis) {
      const keys = await this.redis.keys(`${this.prefix}*`);
      if (keys.length) await this.redis.del(...keys);
      this.redis.disconnect();
    }
    await this.h.tearDown();
  }
}
