// Helpers for tests that run Bulwark's real binaries as child processes.
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

const handedOut = new Set<number>();

/**
 * A port that was free a moment ago (the OS picks it), and not one this process handed out before:
 * the OS may offer a port again as soon as its probe closed, and a server given the same port for
 * two listeners fails to start.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await probePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

function probePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface RunningProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs a TypeScript entry point from the sources, as the workspace's tests see them. */
export function runTs(entry: string, args: string[], env: Record<string, string>): RunningProcess {
  // node itself (not a pnpm or tsx wrapper) so that signals reach the program under test.
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", entry, ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  // "close", not "exit": at "exit" the child's stdout and stderr may still hold unread output, and
  // a test that parses it right after (an agent's --json report) would find it cut short.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  return { child, output: () => output, exited };
}

/** Polls a URL until it answers with the wanted status, or fails with the process output. */
export async function waitForStatus(
  url: string,
  status: number,
  proc: RunningProcess,
  timeoutMs = 60_000,
): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) throw new Error(`process exited early:\n${proc.output()}`);
    try {
      const res = await fetch(url);
      if (res.status === status) return res;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(
    `${url} did not answer ${status} within ${timeoutMs} ms (last: ${last}):\n${proc.output()}`,
  );
}
