import { agentError, invalidArgument } from "../errors.js";
import { psQuote, runPowershellJson } from "../powershell.js";
import type { JournalEntry } from "./journal.js";
import { BaseSnapshot, type ProviderContext, type SnapshotProvider } from "./provider.js";

/** Volumes VSS accepts: a drive root (C:\) or a volume GUID path (\\?\Volume{…}\). */
const VSS_VOLUME = /^(?:[A-Za-z]:\\|\\\\\?\\Volume\{[0-9A-Fa-f-]{36}\}\\)$/;
const SHADOW_ID = /^\{[0-9A-Fa-f-]{36}\}$/;
const SHADOW_DEVICE = /^\\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy\d+$/;
/** Win32_ShadowCopy.Create return codes (documented by Microsoft) worth naming in an error. */
const CREATE_ERRORS: Record<number, string> = {
  1: "access denied",
  2: "invalid argument",
  3: "volume not found",
  4: "volume not supported",
  5: "unsupported shadow copy context",
  6: "insufficient storage",
  7: "volume in use",
  8: "maximum number of shadow copies reached",
  9: "another shadow copy operation is in progress",
  10: "shadow copy provider vetoed the operation",
  11: "shadow copy provider not registered",
  12: "shadow copy provider failure",
};

export interface VssProviderOptions {
  volume: string;
}

/** The script that creates a shadow copy and reports its device and the volume's size. */
export function vssCreateScript(volume: string): string {
  return [
    "$r = Invoke-CimMethod -ClassName Win32_ShadowCopy -MethodName Create -Arguments @{ Volume = " +
      `${psQuote(volume)}; Context = 'ClientAccessible' }`,
    "if ($r.ReturnValue -ne 0) { [pscustomobject]@{ ReturnValue = [int]$r.ReturnValue } | ConvertTo-Json -Compress; exit 0 }",
    "$s = Get-CimInstance -ClassName Win32_ShadowCopy -Filter \"ID='$($r.ShadowID)'\"",
    "$p = Get-Partition | Where-Object { $_.AccessPaths -contains $s.VolumeName } | Select-Object -First 1",
    "[pscustomobject]@{ ReturnValue = 0; ShadowID = $r.ShadowID; DeviceObject = $s.DeviceObject; " +
      "VolumeName = $s.VolumeName; Size = [int64]$p.Size } | ConvertTo-Json -Compress",
  ].join("\n");
}

export function vssDeleteScript(shadowId: string): string {
  if (!SHADOW_ID.test(shadowId)) throw invalidArgument(`"${shadowId}" is not a shadow copy ID`);
  return `Get-CimInstance -ClassName Win32_ShadowCopy -Filter "ID='${shadowId}'" | Remove-CimInstance`;
}

interface CreateResult {
  ReturnValue: number;
  ShadowID?: string;
  DeviceObject?: string;
  VolumeName?: string;
  Size?: number;
}

export function parseVssCreate(output: unknown): Required<CreateResult> {
  const r = output as CreateResult | null;
  if (!r || typeof r.ReturnValue !== "number") {
    throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "Win32_ShadowCopy.Create gave no ReturnValue");
  }
  if (r.ReturnValue !== 0) {
    throw agentError(
      "BULWARK_AGENT_SNAPSHOT_FAILED",
      `Win32_ShadowCopy.Create returned ${r.ReturnValue} (${CREATE_ERRORS[r.ReturnValue] ?? "unknown error"})`,
      { returnValue: r.ReturnValue },
    );
  }
  if (!r.ShadowID || !SHADOW_ID.test(r.ShadowID) || !r.DeviceObject || !SHADOW_DEVICE.test(r.DeviceObject)) {
    throw agentError(
      "BULWARK_AGENT_COMMAND_OUTPUT_INVALID",
      "shadow copy ID or device object missing or malformed",
    );
  }
  if (typeof r.Size !== "number" || !Number.isSafeInteger(r.Size) || r.Size <= 0) {
    throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "volume size of the shadow copy is missing");
  }
  return r as Required<CreateResult>;
}

/**
 * Volume Shadow Copy through CIM (Win32_ShadowCopy). VSS asks writers (SQL Server, Exchange, the
 * registry) to flush and hold I/O for the instant, so the copy is application-consistent.
 * ClientAccessible copies persist after the process ends, hence the journal and explicit delete.
 */
export class VssProvider implements SnapshotProvider {
  readonly kind = "vss" as const;

  constructor(
    private readonly ctx: ProviderContext,
    private readonly options: VssProviderOptions,
  ) {
    if (!VSS_VOLUME.test(options.volume))
      throw invalidArgument(`"${options.volume}" is not a volume VSS can copy`);
  }

  async prepare(volumeKey: string): Promise<VssSnapshot> {
    const entry = await this.ctx.journal.add({
      provider: this.kind,
      volumeKey,
      retained: false,
      data: { volume: this.options.volume },
    });
    let created: Required<CreateResult>;
    try {
      created = parseVssCreate(
        await runPowershellJson(this.ctx.runner, vssCreateScript(this.options.volume)),
      );
    } catch (err) {
      await this.ctx.journal.remove(entry.id);
      throw err;
    }
    await this.ctx.journal.update(entry.id, { data: { shadowId: created.ShadowID } });
    const snapshot = new VssSnapshot(
      this.ctx,
      entry.id,
      created.ShadowID,
      created.DeviceObject,
      created.Size,
    );
    snapshot.start();
    return snapshot;
  }

  cleanupStale(entry: JournalEntry): Promise<void> {
    return cleanupStaleVss(this.ctx, entry);
  }
}

/**
 * Deletes a shadow copy a killed run left. A kill between Create and recording the ID leaves one we
 * cannot name; the entry then has no shadowId, and VSS's own storage limits age it out.
 */
export async function cleanupStaleVss(ctx: ProviderContext, entry: JournalEntry): Promise<void> {
  if (entry.data.shadowId) await runPowershellJson(ctx.runner, vssDeleteScript(entry.data.shadowId));
  await ctx.journal.remove(entry.id);
}

export class VssSnapshot extends BaseSnapshot {
  readonly provider = "vss" as const;
  readonly consistency = "snapshot" as const;

  constructor(
    ctx: ProviderContext,
    journalId: string,
    readonly shadowId: string,
    readonly devicePath: string,
    readonly size: number,
  ) {
    super(ctx, journalId);
  }

  start(): void {
    this.track(`shadow copy ${this.shadowId}`);
  }

  protected async doRelease(): Promise<void> {
    await runPowershellJson(this.ctx.runner, vssDeleteScript(this.shadowId));
    await this.ctx.journal.remove(this.journalId);
  }
}
