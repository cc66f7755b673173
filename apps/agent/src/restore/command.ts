import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { invalidArgument } from "../errors.js";
import { mtlsCredentials, type TlsFiles } from "../upload/transport.js";
import { RestoreResumeFile } from "./resume-file.js";
import { type RestoreReport, runRestore } from "./run.js";

// `bulwark-agent restore <job-id> --target <device|file> [--delta] [--whole-disk]
// [--yes-overwrite-foreign]`: runs one RESTORE job the server issued to this agent, in the
// foreground (the bare-metal path, docs/bare-metal-restore.md). The server address and the mTLS
// material come from flags or the environment, else from the enrolled identity in the state
// directory (<state-dir>/identity/: agent.json's agentAddress, ca.pem, cert.pem, key.pem).

export const RESTORE_USAGE = `  restore <job-id>               run a restore job of this agent: --target DEVICE|FILE [--delta]
                                 [--whole-disk] [--yes-overwrite-foreign] [--server URL]
                                 [--ca FILE --cert FILE --key FILE] [--threads N]`;

/** Progress lines on stderr at most this often. */
const PROGRESS_INTERVAL_MS = 1000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface RestoreCommandValues {
  target?: string;
  delta?: boolean;
  "whole-disk"?: boolean;
  "yes-overwrite-foreign"?: boolean;
  server?: string;
  ca?: string;
  cert?: string;
  key?: string;
  threads?: string;
  json?: boolean;
  stateDir: string;
}

/** The server address and TLS files: flags, then environment, then the enrolled identity. */
async function connection(values: RestoreCommandValues): Promise<{ serverUrl: string; tls: TlsFiles }> {
  const dir = join(values.stateDir, "identity");
  const pick = (flag: string | undefined, env: string, file: string) =>
    flag ?? process.env[env] ?? join(dir, file);
  let serverUrl = values.server ?? process.env.BULWARK_SERVER_URL;
  if (!serverUrl) {
    try {
      const record = JSON.parse(await readFile(join(dir, "agent.json"), "utf8")) as {
        agentAddress?: unknown;
      };
      if (typeof record.agentAddress === "string") serverUrl = record.agentAddress;
    } catch {
      // not enrolled here: the flags must say where to go
    }
  }
  if (!serverUrl) {
    throw invalidArgument(
      `restore needs --server (or BULWARK_SERVER_URL, or an enrolled identity in ${dir})`,
    );
  }
  return {
    serverUrl,
    tls: {
      caPath: pick(values.ca, "BULWARK_AGENT_CA", "ca.pem"),
      certPath: pick(values.cert, "BULWARK_AGENT_CERT", "cert.pem"),
      keyPath: pick(values.key, "BULWARK_AGENT_KEY", "key.pem"),
    },
  };
}

export async function restoreCommand(
  jobId: string | undefined,
  values: RestoreCommandValues,
): Promise<RestoreReport> {
  if (!jobId || !UUID.test(jobId)) throw invalidArgument("restore needs the restore job's ID (a UUID)");
  if (!values.target) throw invalidArgument("restore needs --target DEVICE|FILE");
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && (!Number.isSafeInteger(threads) || threads < 1)) {
    throw invalidArgument(`--threads must be a positive integer, got ${values.threads}`);
  }
  const { serverUrl, tls } = await connection(values);
  const resume = new RestoreResumeFile(values.stateDir, jobId, values.target);
  const resumeFromIndex = await resume.load();
  if (resumeFromIndex > 0) process.stderr.write(`resuming job ${jobId} from chunk ${resumeFromIndex}\n`);
  let lastPrinted = 0;
  const report = await runRestore({
    serverUrl,
    credentials: await mtlsCredentials(tls),
    jobId,
    targetPath: values.target,
    mode: values.delta ? "delta" : "full",
    allowForeignTarget: values["yes-overwrite-foreign"] === true,
    wholeDisk: values["whole-disk"] === true,
    ...(threads ? { threads } : {}),
    resumeFromIndex,
    onResumePoint: (index) => resume.save(index),
    onReconnect: (attempt, error) =>
      process.stderr.write(`reconnecting (attempt ${attempt}): ${error.message}\n`),
    onProgress: (p) => {
      const now = Date.now();
      if (now - lastPrinted < PROGRESS_INTERVAL_MS && p.bytesDone < p.volumeBytes) return;
      lastPrinted = now;
      process.stderr.write(
        values.json
          ? `${JSON.stringify({ progress: p })}\n`
          : `progress ${p.bytesDone}/${p.volumeBytes} bytes, fetched ${p.bytesFetched}, written ${p.bytesWritten}\n`,
      );
    },
  });
  // Best effort, as in the daemon's runner: the server has the agent's Complete and the job is
  // SUCCEEDED; a file left behind is read only by a later run of this job, which it never gets.
  await resume.remove().catch(() => undefined);
  return report;
}

export function formatRestoreReport(r: RestoreReport): string {
  return [
    `restored ${r.restorePointId} onto ${r.target} (${r.mode}${r.foreignTarget ? ", foreign target" : ""}), job ${r.jobId}`,
    `volume ${r.volumeBytes} B; fetched ${r.bytesFetched} B; written ${r.bytesWritten} B`,
    `chunks: ${r.chunksReceived} received, ${r.chunksUnchanged} unchanged, ${r.chunksZeroWritten} zeroed, ${r.chunksZeroSkipped} already zero`,
    ...(r.gpt ? [`gpt: ${r.gpt.status}${"reason" in r.gpt ? ` (${r.gpt.reason})` : ""}`] : []),
    `reconnects: ${r.resumedFrom.length}; ${r.durationMs} ms`,
  ].join("\n");
}
