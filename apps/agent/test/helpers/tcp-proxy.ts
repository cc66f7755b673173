import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP forwarder between the agent and a server, so a test can cut every live connection mid-stream
 * (both sockets destroyed: the agent sees a reset, or an orderly close when the proxy had already
 * read all it was sent, as from a dropped path or a middlebox closing the connection).
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;
  cuts = 0;
  /** Bytes forwarded agent → server. */
  upstreamBytes = 0;
  /** Called with the running byte count; return true to cut all connections now. */
  cutWhen: ((upstreamBytes: number) => boolean) | undefined;

  constructor(
    private readonly targetPort: number,
    private readonly targetHost = "127.0.0.1",
  ) {}

  async start(): Promise<number> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {});
      }
      client.on("data", (d: Buffer) => {
        this.upstreamBytes += d.length;
        if (this.cutWhen?.(this.upstreamBytes)) {
          this.cutWhen = undefined;
          this.cut();
          return;
        }
        upstream.write(d);
      });
      upstream.on("data", (d: Buffer) => client.write(d));
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.server = server;
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  /** Destroys every connection through the proxy; new connections are accepted again. */
  cut(): void {
    this.cuts++;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
