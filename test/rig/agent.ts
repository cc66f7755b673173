// Backups inside the rig VM: the agent's runBackup (guest/backup.mjs) against the RigServer.
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
      if (code !== 0) throw new Error(`backup in the guest failed (${code}):\n${output}`);
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
