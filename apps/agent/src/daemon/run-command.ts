import { isBulwarkError } from "@bulwark/errors";
import { AGENT_VERSION } from "../identity/facts.js";
import { renewIfDue } from "../identity/renew.js";
import { loadAgentIdentity } from "../identity/store.js";
import { createCommandRestoreRunner } from "../restore/runner.js";
import { processReleases } from "../snapshot/release-registry.js";
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
  // Runs before the release registry's handler (installed by the CLI for every command), which
  // releases snapshots and exits: end the stream and abort jobs first, so the server sees the
  // stream close and running jobs stop at their next step.
  const onSignal = () => void daemon.stop();
  process.prependListener("SIGTERM", onSignal);
  process.prependListener("SIGINT", onSignal);
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
    return exit.kind === "revoked" ? EXIT_REVOKED : 0;
  } finally {
    clearInterval(renewTimer);
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
}
