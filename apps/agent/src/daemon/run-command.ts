import { isBulwarkError } from "@bulwark/errors";
import { ProcessCommandRunner } from "../command-runner.js";
import { AGENT_VERSION } from "../identity/facts.js";
import { renewIfDue } from "../identity/renew.js";
import { loadAgentIdentity } from "../identity/store.js";
import { createCommandRestoreRunner } from "../restore/runner.js";
import { SnapshotJournal } from "../snapshot/journal.js";
import { processReleases } from "../snapshot/release-registry.js";
import { cleanupStaleSnapshots } from "../snapshot/session.js";
import { mtlsCredentials, type TlsFiles } from "../upload/transport.js";
import { AgentDaemon, type DaemonLog, stderrLog } from "./daemon.js";

// `bulwark-agent run`: builds the daemon from the enrolled identity in the state directory (or,
// for an agent set up by hand, from --server/--ca/--cert/--key), wires restores and certificate
// renewal, and runs until SIGTERM/SIGINT or revocation.

export const RUN_USAGE = `  run                            the agent daemon: keeps the control stream to the server and runs its
                                 jobs; identity from --state-dir (bulwark-agent enroll), else --server
                                 --ca --cert --key; [--image FILE]... offers image files as volumes`;

/** How often the daemon checks whether its certificate is due for renewal (renewIfDue decides). */
export const RENEW_CHECK_INTERVAL_MS = 60 * 60 * 1000;

/** Exit code after revocation: distinct, so a supervisor does not restart the agent in a loop. */
export const EXIT_REVOKED = 3;

export interface RunCommandValues {
  "state-dir"?: string;
  server?: string;
  ca?: string;
  cert?: string;
  key?: string;
  image?: string[];
  "chunk-size"?: string;
  threads?: string;
}

function flag(value: string | undefined, env: string, name: string): string {
  const v = value ?? process.env[env];
  if (!v) throw new Error(`run needs an enrolled identity in the state directory, or --${name} (or ${env})`);
  return v;
}

function positive(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new Error(`--${name} must be a positive integer, got ${value}`);
  return n;
}

export async function runCommand(
  values: RunCommandValues,
  stateDir: string,
  log: DaemonLog = stderrLog,
): Promise<number> {
  const identity = await loadAgentIdentity(stateDir);
  const serverUrl = identity?.agentAddress ?? flag(values.server, "BULWARK_SERVER_URL", "server");
  const tls: TlsFiles = identity?.tls ?? {
    caPath: flag(values.ca, "BULWARK_AGENT_CA", "ca"),
    certPath: flag(values.cert, "BULWARK_AGENT_CERT", "cert"),
    keyPath: flag(values.key, "BULWARK_AGENT_KEY", "key"),
  };
  const chunkSize = positive("chunk-size", values["chunk-size"]);
  const threads = positive("threads", values.threads);
  const renew = identity
    ? async (force: boolean) => {
        const r = await renewIfDue(stateDir, new Date(), { force });
        if (r.renewed) log("info", "certificate renewed", { notAfter: r.identity.notAfter });
      }
    : undefined;
  const daemon = new AgentDaemon({
    serverUrl,
    tls,
    stateDir,
    agentVersion: AGENT_VERSION,
    imageFiles: values.image ?? [],
    ...(chunkSize ? { chunkSize } : {}),
    ...(threads ? { threads } : {}),
    restoreRunner: createCommandRestoreRunner({
      serverUrl,
      credentials: () => mtlsCredentials(tls),
      stateDir,
      ...(threads ? { threads } : {}),
    }),
    ...(renew ? { renewCertificate: renew } : {}),
    releases: processReleases,
    log,
  });
  // On SIGTERM/SIGINT the registry's handler (installed by the CLI for every command) first has the
  // daemon stop its jobs, each through its own path: snapshot released, post hooks run, result
  // recorded and sent; then it releases whatever is left and exits 128 + signal.
  const undrain = processReleases.beforeRelease(() => daemon.stop());
  await cleanupAfterKill(stateDir, log);
  const renewTimer = renew
    ? setInterval(() => {
        renew(false).catch((err: unknown) =>
          log("warn", "certificate renewal check failed", {
            error: isBulwarkError(err) ? `${err.code}: ${err.message}` : (err as Error).message,
          }),
        );
      }, RENEW_CHECK_INTERVAL_MS)
    : undefined;
  try {
    const exit = await daemon.run();
    // Stopped by a signal: the handler is still releasing and ends the process with its code.
    if (processReleases.exiting) await processReleases.exiting;
    return exit.kind === "revoked" ? EXIT_REVOKED : 0;
  } finally {
    clearInterval(renewTimer);
    undrain();
  }
}

/**
 * A previous run killed by SIGKILL or a power loss left snapshots behind (a frozen mount, an LV, a
 * shadow copy): release them from the journal before taking new ones, as `bulwark-agent cleanup`
 * does. A failure is logged, not fatal: the providers refuse what they cannot take cleanly.
 */
async function cleanupAfterKill(stateDir: string, log: DaemonLog): Promise<void> {
  const runner = new ProcessCommandRunner();
  try {
    const scanLvm =
      process.platform === "linux" &&
      (await runner.run({ command: "lvs", args: ["--version"] }).then(
        (r) => r.exitCode === 0,
        () => false,
      ));
    const ctx = { runner, journal: SnapshotJournal.inDirectory(stateDir), releases: processReleases };
    const { cleaned, failed } = await cleanupStaleSnapshots(ctx, { scanLvm });
    if (cleaned.length) log("warn", "released snapshots a killed run left behind", { cleaned });
    for (const f of failed) log("error", "could not release a stale snapshot", { id: f.id, error: f.error });
  } catch (err) {
    log("error", "stale snapshot cleanup failed", { error: (err as Error).message });
  }
}
