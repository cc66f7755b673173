import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type VerifyResult, verifySignature } from "../../src/alerts/index.js";

// A real HTTP receiver for alert tests: it reads the raw body, checks Bulwark-Signature with the
// secret it was given (the receiver's side of docs/alerts.md) and records every request with the
// verdict. It answers 200 to valid requests, 401 to invalid ones, or `status` when set.

export interface ReceivedAlert {
  path: string;
  event: string | undefined;
  deliveryId: string | undefined;
  signature: string | undefined;
  body: string;
  verdict: VerifyResult;
}

export class WebhookReceiver {
  readonly received: ReceivedAlert[] = [];
  /** Secret per request path (one path per endpoint). */
  readonly secrets = new Map<string, string>();
  /** Answer with this status instead (e.g. 503 while "down"). */
  status: number | undefined;
  private server: Server | undefined;
  port = 0;

  async start(port = 0): Promise<void> {
    const server = createServer(
      (req, res) => void this.handle(req).then((code) => res.writeHead(code).end()),
    );
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  private async handle(req: IncomingMessage): Promise<number> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const path = req.url ?? "/";
    const header = (name: string) => {
      const v = req.headers[name];
      return typeof v === "string" ? v : undefined;
    };
    const verdict = verifySignature({
      header: header("bulwark-signature"),
      body,
      secret: this.secrets.get(path) ?? "",
      nowSeconds: Math.floor(Date.now() / 1000),
    });
    this.received.push({
      path,
      event: header("bulwark-event"),
      deliveryId: header("bulwark-delivery"),
      signature: header("bulwark-signature"),
      body,
      verdict,
    });
    if (this.status !== undefined) return this.status;
    return verdict.ok ? 200 : 401;
  }

  /** Stops listening (connections refused until start(port) again). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
