// Backups inside the rig VM: the agent's runBackup (guest/backup.mjs) against the RigServer; restores
// through the agent's own command line (`bulwark-agent restore`, the bare-metal path).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RigServer } from "./server.js";
import type { GuestCommand, RigVm } from "./vm.js";

export interface GuestReport {
  restorePointId: string;
  provider: string;
  consistency: string;
  filesystem: string;
  planMethod: string;
  method: string;
  cache: string;
  durationMs: number;
  warnings: string[];
  counters: {
    bytesRead: number;
    bytesHashed: number;
    bytesSent: number;
    chunksTotal: number;
    chunksSent: number;
    chunksSkipped: number;
    chunksUnchanged: number;
  };
  /** Added by guest/backup.mjs: node's start-up and the external commands the agent ran. */
  timing: { startupMs: number; commands: { command: string; ms: number }[] };
}

export type GuestSource =
  | { kind: "lvm-thin"; vg: string; lv: string }
  | { kind: "lvm"; vg: string; lv: string; cowSize: string }
  | { kind: "device"; devicePath: string };

let seq = 0;

/** A started backup in the guest; report() waits for it and parses its JSON report. */
export interface GuestBackup {
  command: GuestCommand;
  report(timeoutMs?: number): Promise<GuestReport>;
}

export async function startGuestBackup(
  vm: RigVm,
  server: RigServer,
  source: GuestSource,
  opts: { stateDir: string; jobId?: string; volumeKey?: string; extra?: Record<string, unknown> },
): Promise<GuestBackup> {
  const n = ++seq;
  const tls = server.agentTls(vm.hostPath("tls"));
  const options = {
    source,
    serverUrl: server.guestUrl,
    tls: {
      caPath: vm.guestPath(join("tls", tls.caPath)),
      certPath: vm.guestPath(join("tls", tls.certPath)),
      keyPath: vm.guestPath(join("tls", tls.keyPath)),
    },
    volumeKey: opts.volumeKey ?? `rig-${source.kind}`,
    stateDir: opts.stateDir,
    jobId: opts.jobId ?? (await server.job()),
    ...opts.extra,
  };
  writeFileSync(vm.hostPath(`backup-${n}.json`), JSON.stringify(options));
  const command = vm.start(
    `cd /work/main && exec node test/rig/guest/backup.mjs ${vm.guestPath(`backup-${n}.json`)} >${vm.guestPath(`report-${n}.json`)}`,
  );
  return {
    command,
    report: async (timeoutMs = 900_000) => {
      const { code, output } = await command.wait(timeoutMs);
      if (code !== 0)
        throw new Error(`backup in the guest failed (${code}):\n${output}\n${server.logTail()}`);
      return JSON.parse(readFileSync(vm.hostPath(`report-${n}.json`), "utf8")) as GuestReport;
    },
  };
}

export async function guestBackup(
  vm: RigVm,
  server: RigServer,
  source: GuestSource,
  opts: { stateDir: string; jobId?: string; volumeKey?: string; extra?: Record<string, unknown> },
): Promise<GuestReport> {
  return (await startGuestBackup(vm, server, source, opts)).report();
}

/** What `bulwark-agent restore --json` prints (the fields the rig checks). */
export interface GuestRestoreReport {
  restorePointId: string;
  target: string;
  foreignTarget: boolean;
  volumeBytes: number;
  bytesFetched: number;
  bytesWritten: number;
  indexVerified: boolean;
  durationMs: number;
}

/**
 * Runs a RESTORE job in the guest with the agent's CLI (built dist/), onto a device of the guest:
 * `bulwark-agent restore JOB --target DEV [--whole-disk] --yes-overwrite-foreign`.
 */
export async function guestRestore(
  vm: RigVm,
  server: RigServer,
  opts: { backupId: string; target: string; wholeDisk: boolean; stateDir: string },
): Promise<GuestRestoreReport> {
  const n = ++seq;
  const tls = server.agentTls(vm.hostPath("tls"));
  const jobId = await server.restoreJob(opts.backupId, opts.target, opts.wholeDisk);
  const args = [
    "restore",
    jobId,
    "--target",
    opts.target,
    ...(opts.wholeDisk ? ["--whole-disk"] : []),
    "--yes-overwrite-foreign",
    "--json",
    "--server",
    server.guestUrl,
    "--ca",
    vm.guestPath(join("tls", tls.caPath)),
    "--cert",
    vm.guestPath(join("tls", tls.certPath)),
    "--key",
    vm.guestPath(join("tls", tls.keyPath)),
    "--state-dir",
    opts.stateDir,
  ];
  const out = vm.guestPath(`restore-${n}.json`);
  const { code, output } = await vm.run(
    `cd /work/main && node apps/agent/dist/cli.js ${args.join(" ")} >${out}`,
    900_000,
  );
  if (code !== 0) throw new Error(`restore in the guest failed (${code}):\n${output}\n${server.logTail()}`);
  return JSON.parse(readFileSync(vm.hostPath(`restore-${n}.json`), "utf8")) as GuestRestoreReport;
}
