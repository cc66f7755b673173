import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  cleanupStaleSnapshots,
  decodeScript,
  type ProviderContext,
  ReleaseRegistry,
  SnapshotJournal,
  VssProvider,
  withSnapshot,
} from "../src/index.js";
import { ScriptedRunner } from "./helpers/scripted-runner.js";
import { tempDir } from "./helpers/system.js";

const SHADOW_ID = "{6A3B2C1D-0E9F-4A8B-9C7D-6E5F4A3B2C1D}";
const DEVICE = "\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy12";
/**
 * Hand-written in the shape the create script emits (ConvertTo-Json -Compress of a pscustomobject
 * with Win32_ShadowCopy's documented ID/DeviceObject/VolumeName and the partition size): this
 * provider cannot run on Linux.
 */
const CREATE_OUTPUT = JSON.stringify({
  ReturnValue: 0,
  ShadowID: SHADOW_ID,
  DeviceObject: DEVICE,
  VolumeName: "\\\\?\\Volume{1b2c3d4e-0000-0000-0000-100000000000}\\",
  Size: 127_293_632_512,
});

describe("VSS provider by command construction", () => {
  let dir: ReturnType<typeof tempDir>;
  let runner: ScriptedRunner;
  let ctx: ProviderContext;
  beforeEach(() => {
    dir = tempDir();
    runner = new ScriptedRunner();
    ctx = { runner, journal: SnapshotJournal.inDirectory(dir.path), releases: new ReleaseRegistry() };
  });
  afterEach(() => dir.cleanup());

  const script = (i: number) => decodeScript(runner.calls[i]!);

  it("creates a ClientAccessible shadow copy through CIM, reads its GLOBALROOT device, deletes it", async () => {
    runner.on((c) => decodeScript(c).includes("MethodName Create"), { stdout: `\uFEFF${CREATE_OUTPUT}\r\n` });
    runner.on((c) => decodeScript(c).includes("Remove-CimInstance"), { stdout: "" });
    const seen = await withSnapshot(ctx, new VssProvider(ctx, { volume: "C:\\" }), "C", {}, async (snap) => {
      expect(await ctx.journal.list()).toMatchObject([{ provider: "vss", data: { shadowId: SHADOW_ID } }]);
      return {
        value: { path: snap.devicePath, size: snap.size, consistency: snap.consistency },
        commit: async () => {},
      };
    });
    expect(seen.value).toEqual({ path: DEVICE, size: 127_293_632_512, consistency: "snapshot" });
    const [create, remove] = runner.calls;
    expect(create!.command).toBe("powershell.exe");
    expect(create!.args.slice(0, 5)).toEqual([
      "-NoProfile",
      "-NonInteractive",
      "-ExecutionPolicy",
      "Bypass",
      "-EncodedCommand",
    ]);
    expect(script(0)).toContain("$ErrorActionPreference = 'Stop'");
    expect(script(0)).toContain(
      "Invoke-CimMethod -ClassName Win32_ShadowCopy -MethodName Create -Arguments @{ Volume = 'C:\\'; Context = 'ClientAccessible' }",
    );
    expect(script(0)).toContain("ConvertTo-Json -Compress");
    expect(remove!.command).toBe("powershell.exe");
    expect(script(1)).toContain(
      `Get-CimInstance -ClassName Win32_ShadowCopy -Filter "ID='${SHADOW_ID}'" | Remove-CimInstance`,
    );
    expect(await ctx.journal.list()).toEqual([]);
    expect(ctx.releases.size).toBe(0);
  });

  it("names Win32_ShadowCopy.Create's error code and leaves no journal entry", async () => {
    runner.on(() => true, { stdout: JSON.stringify({ ReturnValue: 8 }) });
    await expect(new VssProvider(ctx, { volume: "D:\\" }).prepare("D")).rejects.toMatchObject({
      code: "BULWARK_AGENT_SNAPSHOT_FAILED",
      message: expect.stringMatching(/returned 8 \(maximum number of shadow copies reached\)/),
    });
    expect(await ctx.journal.list()).toEqual([]);
  });

  it("deletes the shadow copy when the read fails", async () => {
    runner.on((c) => decodeScript(c).includes("MethodName Create"), { stdout: CREATE_OUTPUT });
    runner.on((c) => decodeScript(c).includes("Remove-CimInstance"));
    await expect(
      withSnapshot(ctx, new VssProvider(ctx, { volume: "C:\\" }), "C", {}, async () => {
        throw new Error("connection lost");
      }),
    ).rejects.toThrow("connection lost");
    expect(runner.pending).toBe(0);
  });

  it("accepts only drive roots and volume GUID paths, so nothing can be injected into the script", () => {
    expect(() => new VssProvider(ctx, { volume: "C:\\'; Remove-Item -Recurse C:\\ ; '" })).toThrow(
      /not a volume/,
    );
    expect(
      () => new VssProvider(ctx, { volume: "\\\\?\\Volume{1b2c3d4e-0000-0000-0000-100000000000}\\" }),
    ).not.toThrow();
  });

  it("cleans a shadow copy a killed run left, by the ID in the journal", async () => {
    await ctx.journal.add({
      provider: "vss",
      volumeKey: "C",
      retained: false,
      data: { volume: "C:\\", shadowId: SHADOW_ID },
    });
    runner.on((c) => decodeScript(c).includes(`ID='${SHADOW_ID}'`));
    const result = await cleanupStaleSnapshots(ctx, { scanLvm: false });
    expect(result).toEqual({ cleaned: [`vss:${SHADOW_ID}`], failed: [] });
    expect(await ctx.journal.list()).toEqual([]);
  });
});
