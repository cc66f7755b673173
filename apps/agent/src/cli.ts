#!/usr/bin/env node
import { stat } from "node:fs/promises";
import { parseArgs } from "node:util";
// First, and before any other module loads: gc-pacer.ts caps V8's young generation, which never
// shrinks back once grown, and loading this CLI's modules alone grew it to 16 MiB semi-spaces
// (33.5 MB committed, mostly empty, at a backup's peak RSS). So the modules below are imported at
// run time, after the cap (gc-pacer.ts itself imports node: modules only).
import "./upload/gc-pacer.js";
import type { BackupReport } from "./backup.js";
import type { CommandRunner } from "./command-runner.js";
import { runMain } from "./run-main.js";
import type { TlsFiles } from "./upload/transport.js";

const { isBulwarkError } = await import("@bulwark/errors");
const { FileByteSource, totalLength } = await import("@bulwark/filesystems");
const { runBackup } = await import("./backup.js");
const { ProcessCommandRunner } = await import("./command-runner.js");
const { deviceBackupSource } = await import("./daemon/volumes.js");
const { loadAgentIdentity } = await import("./identity/store.js");
const { planVolume } = await import("./plan/volume-plan.js");
const { SnapshotJournal } = await import("./snapshot/journal.js");
const { processReleases } = await import("./snapshot/release-registry.js");
const { cleanupStaleSnapshots } = await import("./snapshot/session.js");

// The other commands' modules (daemon, restore, enrollment, inventory) are imported when their
// command runs: loaded up front they added ~22 MB to every one-shot backup's RSS.

/** Default state directory (journal, index caches) on Linux; Windows uses %ProgramData%. */
const DEFAULT_STATE_DIR =
  process.platform === "win32"
    ? `${process.env.ProgramData ?? "C:\\ProgramData"}\\Bulwark\\agent`
    : "/var/lib/bulwark-agent";
/** 4 MiB: a placeholder until the repository fixes the chunk size; every command takes --chunk-size. */
const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;
/** Progress lines on stderr at most this often: readable, and cheap on a multi-hour backup. */
const PROGRESS_INTERVAL_MS = 1000;

async function usage(): Promise<string> {
  const [{ RESTORE_USAGE }, { RUN_USAGE }] = await Promise.all([
    import("./restore/command.js"),
    import("./daemon/run-command.js"),
  ]);
  return `usage: bulwark-agent <command> [options]
  inventory                      disks, partitions and volumes of this machine
  plan <device|image>            which chunks a backup would read (--chunk-size BYTES)
  disk-plan <disk|image>         partition table regions and partitions of a whole disk
  cleanup                        remove snapshots a killed run left behind (--state-dir DIR)
  enroll --token-file FILE|-     enroll with a server: the token file from \`bulwark-server token create\`
                                 (or stdin); [--server HOST:PORT] overrides its enroll address
  renew [--force]                renew this agent's certificate if due (two thirds of its lifetime)
  backup <device|image>          one-shot backup to a server: --volume-key KEY [--server URL]
                                 [--ca FILE --cert FILE --key FILE] [--bandwidth-limit BYTES/s]
                                 [--job ID] [--freeze MOUNTPOINT] [--streams N] [--threads N]
                                 [--snapshot lvm|lvm-thin|device] (default: an LV's own
                                 LVM snapshot, else the device)
${RESTORE_USAGE}
${RUN_USAGE}
options: --json  --chunk-size BYTES  --state-dir DIR
backup takes the server and TLS files from the flags, else from BULWARK_SERVER_URL,
BULWARK_AGENT_CA, BULWARK_AGENT_CERT and BULWARK_AGENT_KEY, else from the identity that
\`enroll\` stored in the state directory.`;
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: "boolean", default: false },
      "chunk-size": { type: "string" },
      "state-dir": { type: "string" },
      server: { type: "string" },
      "volume-key": { type: "string" },
      "bandwidth-limit": { type: "string" },
      job: { type: "string" },
      freeze: { type: "string" },
      snapshot: { type: "string" },
      streams: { type: "string" },
      threads: { type: "string" },
      ca: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      "token-file": { type: "string" },
      force: { type: "boolean", default: false },
      target: { type: "string" },
      delta: { type: "boolean", default: false },
      "whole-disk": { type: "boolean", default: false },
      "yes-overwrite-foreign": { type: "boolean", default: false },
      image: { type: "string", multiple: true },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const [command, target] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${await usage()}\n`);
    return command || values.help ? 0 : 2;
  }
  processReleases.installSignalHandlers();
  const runner = new ProcessCommandRunner();
  const print = (value: unknown, text: () => string): void => {
    process.stdout.write(values.json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
  };
  switch (command) {
    case "inventory": {
      const { collectInventory } = await import("./inventory/index.js");
      const inventory = await collectInventory(runner);
      print(inventory, () =>
        inventory.disks
          .map((d) =>
            [
              `${d.path} ${d.size} bytes ${d.partitionTable ?? "no table"} ${d.model ?? ""}`.trim(),
              ...d.volumes.map(
                (v) => `  ${v.kind} ${v.path} ${v.filesystem ?? "-"} ${v.mountpoints.join(",")}`,
              ),
              ...d.partitions.flatMap((p) => [
                `  ${p.path} ${p.size} bytes`,
                ...p.volumes.map(
                  (v) => `    ${v.kind} ${v.path} ${v.filesystem ?? "-"} ${v.mountpoints.join(",")}`,
                ),
              ]),
            ].join("\n"),
          )
          .join("\n"),
      );
      return 0;
    }
    case "plan": {
      if (!target) throw new Error("plan needs a device or image path");
      const chunkSize = Number(values["chunk-size"] ?? DEFAULT_CHUNK_SIZE);
      const source = await FileByteSource.open(target);
      try {
        const { plan, filesystem, bitmapSkipped } = await planVolume(source, { chunkSize });
        const summary = {
          filesystem,
          method: plan.method,
          volumeSize: plan.volumeSize,
          chunkSize: plan.chunkSize,
          chunkCount: plan.chunkCount,
          chunksToRead: plan.read.reduce((n, r) => n + r.count, 0),
          chunksUnused: plan.unused.reduce((n, r) => n + r.count, 0),
          bytesToRead: plan.bytesToRead,
          ...(bitmapSkipped ? { bitmapSkipped } : {}),
        };
        print(summary, () =>
          Object.entries(summary)
            .map(([k, v]) => `${k}: ${v}`)
            .join("\n"),
        );
      } finally {
        await source.close();
      }
      return 0;
    }
    case "disk-plan": {
      if (!target) throw new Error("disk-plan needs a disk or image path");
      const { planDiskCapture } = await import("./plan/disk-plan.js");
      const source = await FileByteSource.open(target);
      try {
        const plan = await planDiskCapture(source);
        print(plan, () =>
          [
            `table: ${plan.table ? `${plan.table.type} (${plan.table.diskId})` : "none"}`,
            `metadata: ${totalLength(plan.metadataRegions)} bytes in ${plan.metadataRegions.length} regions`,
            ...plan.partitions.map((p) => `  #${p.number} @${p.offset} ${p.length} bytes ${p.filesystem}`),
            ...plan.warnings.map((w) => `warning: ${w}`),
          ].join("\n"),
        );
      } finally {
        await source.close();
      }
      return 0;
    }
    case "cleanup": {
      const journal = SnapshotJournal.inDirectory(values["state-dir"] ?? DEFAULT_STATE_DIR);
      const ctx = { runner, journal, releases: processReleases };
      // The LVM tag scan also catches snapshots whose journal was lost; only where LVM exists.
      const scanLvm = process.platform === "linux" && (await hasCommand(runner, "lvs"));
      const result = await cleanupStaleSnapshots(ctx, { scanLvm });
      print(
        result,
        () =>
          [
            ...result.cleaned.map((c) => `removed ${c}`),
            ...result.failed.map((f) => `FAILED ${f.id}: ${f.error}`),
          ].join("\n") || "nothing to clean",
      );
      return result.failed.length ? 1 : 0;
    }
    case "backup": {
      if (!target) throw new Error("backup needs a device or image path");
      const report = await backupCommand(target, values);
      print(report, () =>
        [
          `restore point: ${report.restorePointId}`,
          `session: ${report.sessionId}${report.resumedSession ? " (resumed)" : ""}, job ${report.jobId}`,
          `provider: ${report.provider} (${report.consistency}), filesystem ${report.filesystem}`,
          `method: ${report.method} (plan ${report.planMethod}; ${report.cache})`,
          `read ${report.counters.bytesRead} B, hashed ${report.counters.bytesHashed} B, sent ${report.counters.bytesSent} B (${report.counters.bytesSentPlain} B plain)`,
          `chunks: ${report.counters.chunksTotal} total, ${report.counters.chunksSent} sent, ${report.counters.chunksUnchanged} unchanged, ${report.counters.chunksZero} zero, ${report.counters.chunksSkipped} skipped`,
          `new in repository: ${report.newBytes} B; reconnects: ${report.reconnects}; ${report.durationMs} ms`,
          ...report.warnings.map((w) => `warning: ${w}`),
        ].join("\n"),
      );
      return 0;
    }
    case "restore": {
      const { formatRestoreReport, restoreCommand } = await import("./restore/command.js");
      const report = await restoreCommand(target, {
        ...values,
        stateDir: values["state-dir"] ?? DEFAULT_STATE_DIR,
      });
      print(report, () => formatRestoreReport(report));
      return 0;
    }
    case "run": {
      const { runCommand } = await import("./daemon/run-command.js");
      return runCommand(values, values["state-dir"] ?? DEFAULT_STATE_DIR);
    }
    case "enroll": {
      // The token is a secret: from a file or stdin only, never from argv.
      const tokenFile = values["token-file"];
      if (!tokenFile) throw new Error("enroll needs --token-file FILE (or - for stdin)");
      const [{ enroll }, { readTokenFile }] = await Promise.all([
        import("./identity/enroll.js"),
        import("./identity/token-file.js"),
      ]);
      const identity = await enroll({
        stateDir: values["state-dir"] ?? DEFAULT_STATE_DIR,
        token: await readTokenFile(tokenFile),
        ...(values.server ? { server: values.server } : {}),
      });
      const summary = {
        agentId: identity.agentId,
        identityDir: identity.dir,
        agentAddress: identity.agentAddress,
        notAfter: identity.notAfter,
        renewAfter: identity.renewAfter,
      };
      print(summary, () =>
        [
          `enrolled as agent ${identity.agentId}`,
          `identity in ${identity.dir}; certificate valid until ${identity.notAfter}, renewed after ${identity.renewAfter}`,
          `agent listener: ${identity.agentAddress}`,
        ].join("\n"),
      );
      return 0;
    }
    case "renew": {
      const { renewIfDue } = await import("./identity/renew.js");
      const { renewed, identity } = await renewIfDue(values["state-dir"] ?? DEFAULT_STATE_DIR, new Date(), {
        force: values.force === true,
      });
      print(
        { renewed, agentId: identity.agentId, notAfter: identity.notAfter, renewAfter: identity.renewAfter },
        () =>
          renewed
            ? `certificate renewed; valid until ${identity.notAfter}`
            : `not due until ${identity.renewAfter} (--force renews now)`,
      );
      return 0;
    }
    default:
      process.stderr.write(`unknown command ${command}\n${await usage()}\n`);
      return 2;
  }
}

/** A positive integer flag, or undefined when absent; anything else is a usage error. */
function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new Error(`--${name} must be a positive integer, got ${value}`);
  return n;
}

function required(name: string, value: string | undefined, env: string): string {
  const v = value ?? process.env[env];
  if (!v) throw new Error(`backup needs --${name} (or ${env})`);
  return v;
}

/**
 * Where backup connects and with which certificate: --server/--ca/--cert/--key, else their
 * environment variables, else the enrolled identity in the state directory.
 */
async function backupEndpoint(
  values: Record<string, string | boolean | string[] | undefined>,
): Promise<{ serverUrl: string; tls: TlsFiles }> {
  const given = (flag: string, env: string) => (values[flag] as string | undefined) ?? process.env[env];
  const ca = given("ca", "BULWARK_AGENT_CA");
  const cert = given("cert", "BULWARK_AGENT_CERT");
  const key = given("key", "BULWARK_AGENT_KEY");
  const server = given("server", "BULWARK_SERVER_URL");
  if (ca && cert && key)
    return {
      serverUrl: required("server", server, "BULWARK_SERVER_URL"),
      tls: { caPath: ca, certPath: cert, keyPath: key },
    };
  if (ca || cert || key)
    throw new Error("backup needs all of --ca, --cert and --key, or none (enrolled identity)");
  const identity = await loadAgentIdentity((values["state-dir"] as string | undefined) ?? DEFAULT_STATE_DIR);
  if (!identity) {
    throw new Error(
      "backup needs --ca, --cert and --key (or BULWARK_AGENT_CA/CERT/KEY), or an identity from bulwark-agent enroll",
    );
  }
  return { serverUrl: server ?? identity.agentAddress, tls: identity.tls };
}

async function backupCommand(
  target: string,
  values: Record<string, string | boolean | string[] | undefined>,
): Promise<BackupReport> {
  const str = (k: string) => values[k] as string | undefined;
  const isDevice = (await stat(target)).isBlockDevice();
  const freeze = str("freeze");
  const chunkSize = positiveInt("chunk-size", str("chunk-size"));
  const bandwidthLimit = positiveInt("bandwidth-limit", str("bandwidth-limit"));
  const streams = positiveInt("streams", str("streams"));
  const threads = positiveInt("threads", str("threads"));
  const json = values.json === true;
  let lastPrinted = 0;
  const snapshot = str("snapshot");
  if (snapshot && !isDevice && snapshot !== "file") {
    throw new Error(`--snapshot ${snapshot}: ${target} is an image file (provider file)`);
  }
  // A block device by the daemon's rule: LVs by their LVM snapshot, other devices as they are.
  const source = isDevice
    ? await deviceBackupSource(new ProcessCommandRunner(), target, {
        ...(snapshot ? { snapshotProvider: snapshot } : {}),
        ...(freeze ? { freeze } : {}),
      })
    : ({ kind: "file", path: target } as const);
  return runBackup({
    source,
    ...(await backupEndpoint(values)),
    volumeKey: required("volume-key", str("volume-key"), "BULWARK_VOLUME_KEY"),
    stateDir: str("state-dir") ?? DEFAULT_STATE_DIR,
    ...(str("job") ? { jobId: str("job") } : {}),
    ...(chunkSize ? { chunkSize } : {}),
    ...(bandwidthLimit ? { bandwidthLimit } : {}),
    ...(streams ? { streams } : {}),
    ...(threads ? { threads } : {}),
    // Progress goes to stderr (stdout is the report), at most once a second.
    onProgress: (p) => {
      const now = Date.now();
      if (now - lastPrinted < PROGRESS_INTERVAL_MS && p.bytesDone < p.bytesTotal) return;
      lastPrinted = now;
      process.stderr.write(
        json
          ? `${JSON.stringify({ progress: { bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, bytesSent: p.counters.bytesSent } })}\n`
          : `progress ${p.bytesDone}/${p.bytesTotal} bytes, sent ${p.counters.bytesSent}\n`,
      );
    },
    onReconnect: (attempt, error) =>
      process.stderr.write(`reconnecting (attempt ${attempt}): ${error.message}\n`),
  });
}

async function hasCommand(runner: CommandRunner, command: string): Promise<boolean> {
  try {
    return (await runner.run({ command, args: ["--version"] })).exitCode === 0;
  } catch {
    return false;
  }
}

runMain(
  () => main(process.argv.slice(2)),
  (err) => (isBulwarkError(err) ? `${err.code}: ${err.message}` : `bulwark-agent: ${(err as Error).message}`),
);
