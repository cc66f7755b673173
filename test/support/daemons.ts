import { join } from "node:path";
import { AgentDaemon, type DaemonExit, stderrLog } from "../../apps/agent/src/daemon/daemon.js";
import { createCommandRestoreRunner } from "../../apps/agent/src/restore/runner.js";
import { mtlsCredentials } from "../../apps/agent/src/upload/transport.js";
import type { Harness, TestAgent } from "../../apps/server/test/support/harness.js";

// The real agent daemon (`bulwark-agent run`, in-process) for the end-to-end tests: one way to
// start it, so every test runs the daemon with the same options as the others.

/** A started daemon, how its run ends, and the agent it runs as. */
export interface RunningDaemon {
  daemon: AgentDaemon;
  exit: Promise<DaemonExit>;
  agent: TestAgent;
}

/**
 * Starts `agent`'s daemon against the agent listener on 127.0.0.1:`port`, with its TLS files in
 * `dir/<agent id>` and its state in `dir/<agent id>/state` (or `stateDir`). `restores` wires the
 * restore runner as `bulwark-agent run` does (apps/agent/src/daemon/run-command.ts); without it
 * the daemon refuses restore commands. BULWARK_TEST_LOG=1 prints its log.
 */
export function startTestDaemon(
  h: Harness,
  agent: TestAgent,
  port: number,
  dir: string,
  opts: { imageFiles?: string[]; stateDir?: string; restores?: boolean } = {},
): RunningDaemon {
  const serverUrl = `https://127.0.0.1:${port}`;
  const tls = h.writeAgentTls(join(dir, agent.id), agent);
  const stateDir = opts.stateDir ?? join(dir, agent.id, "state");
  const daemon = new AgentDaemon({
    serverUrl,
    tls,
    stateDir,
    agentVersion: "0.1.0-test",
    imageFiles: opts.imageFiles ?? [],
    ...(opts.restores
      ? {
          restoreRunner: createCommandRestoreRunner({
            serverUrl,
            credentials: () => mtlsCredentials(tls),
            stateDir,
            threads: 2,
          }),
        }
      : {}),
    log: process.env.BULWARK_TEST_LOG ? stderrLog : () => undefined,
    progressIntervalMs: 0,
  });
  return { daemon, exit: daemon.run(), agent };
}

/** Stops the daemons (emptying the list) and waits for each run to end. */
export async function stopTestDaemons(daemons: RunningDaemon[]): Promise<void> {
  for (const d of daemons.splice(0)) {
    await d.daemon.stop();
    await d.exit;
  }
}
