import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestPki } from "./helpers/tls.js";

// The agent's identity channels send a TLS ServerName only for DNS names (src/identity/tls.ts):
// enrolling to an IP address (the default 127.0.0.1:8444) must not make Node warn DEP0123. Each
// case runs in a fresh process, since Node warns once per process. The "server" is a TCP listener
// that keeps the TLS ClientHello and hangs up, so the enroll code's first call fails at once.

const run = promisify(execFile);
const agentDir = fileURLToPath(new URL("..", import.meta.url));
const enrollModule = new URL("../src/identity/enroll.ts", import.meta.url).href;
const transportModule = new URL("../src/upload/transport.ts", import.meta.url).href;

let server: Server;
let port: number;
const hellos: Buffer[] = [];

beforeAll(async () => {
  server = createServer((socket) => {
    socket.once("data", (chunk) => {
      hellos.push(chunk);
      socket.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, resolve));
  port = (server.address() as { port: number }).port;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function child(script: string): Promise<{ stdout: string; stderr: string }> {
  return run(
    process.execPath,
    ["--conditions=source", "--import", "tsx", "--input-type=module", "-e", script],
    { cwd: agentDir, timeout: 120_000 },
  );
}

/** The enroll code's first step (fetchPinnedCa) against `target`, in its own process. */
function enrollStep(target: string) {
  hellos.length = 0;
  return child(`
    const { fetchPinnedCa } = await import(${JSON.stringify(enrollModule)});
    await fetchPinnedCa(${JSON.stringify(target)}, "00".repeat(32)).then(
      () => console.log("resolved"),
      (err) => console.log(err.code),
    );
  `);
}

describe("TLS ServerName of the identity channels", { timeout: 180_000 }, () => {
  it("grpc-js's own credentials set the IP as ServerName: Node warns DEP0123 (what the fix avoids)", async () => {
    const { stderr } = await child(`
      const grpc = await import("@grpc/grpc-js");
      const creds = grpc.credentials.createSsl(null, null, null, { rejectUnauthorized: false });
      const client = new grpc.Client("127.0.0.1:${port}", creds);
      await new Promise((resolve) => client.waitForReady(Date.now() + 3000, resolve));
      client.close();
    `);
    expect(stderr).toContain("DEP0123");
  });

  it("enrolling to an IP address sends no ServerName and Node does not warn", async () => {
    const { stdout, stderr } = await enrollStep(`127.0.0.1:${port}`);
    expect(stdout.trim()).toMatch(/^BULWARK_/);
    expect(stderr).not.toContain("DEP0123");
    // The TLS handshake did start (a ClientHello: record type 22).
    expect(hellos.length).toBeGreaterThan(0);
    expect(hellos[0]![0]).toBe(0x16);
  });

  it("the daemon's and renewal's mTLS channel to an IP address sends no ServerName either", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bulwark-tls-"));
    try {
      const pki = makeTestPki(dir);
      const files = { caPath: pki.caPath, certPath: pki.clientCertPath, keyPath: pki.clientKeyPath };
      hellos.length = 0;
      const { stderr } = await child(`
        const grpc = await import("@grpc/grpc-js");
        const { mtlsCredentials } = await import(${JSON.stringify(transportModule)});
        const client = new grpc.Client("127.0.0.1:${port}", await mtlsCredentials(${JSON.stringify(files)}));
        await new Promise((resolve) => client.waitForReady(Date.now() + 3000, resolve));
        client.close();
      `);
      expect(stderr).not.toContain("DEP0123");
      expect(hellos.length).toBeGreaterThan(0);
      expect(hellos[0]![0]).toBe(0x16);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("enrolling to a DNS name still sends it as ServerName", async () => {
    const { stderr } = await enrollStep(`localhost:${port}`);
    expect(stderr).not.toContain("DEP0123");
    expect(hellos.length).toBeGreaterThan(0);
    expect(hellos.some((h) => h.includes(Buffer.from("localhost")))).toBe(true);
  });
});
