import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type CommandRunner,
  type CommandSpec,
  cleanupStaleSnapshots,
  dmName,
  LvmProvider,
  LvmThinProvider,
  type ProviderContext,
  parseThinDelta,
  ReleaseRegistry,
  SnapshotJournal,
  withSnapshot,
} from "../src/index.js";
import { ScriptedRunner } from "./helpers/scripted-runner.js";
import { sh, tempDir } from "./helpers/system.js";

/**
 * lvs output in the shape lvm2 2.03.16 prints with --reportformat json (the envelope and indentation
 * were recorded from the real lvs on this machine, whose kernel has no device-mapper so it cannot
 * create LVs; the rows are hand-written with the documented field names and string values).
 */
function lvsJson(rows: Record<string, string>[]): string {
  const body = rows.map((r) => `                  ${JSON.stringify(r)}`).join(",\n");
  return `  {\n      "report": [\n          {\n              "lv": [\n${body}\n              ]\n          }\n      ]\n  }\n`;
}

const LVS = "lvs --reportformat json --units b --nosuffix -o";

/** Holds the first command matching `match` until open(): a signal arrives while it runs. */
function hold(inner: ScriptedRunner, match: (c: CommandSpec) => boolean) {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  let started!: () => void;
  const running = new Promise<void>((resolve) => {
    started = resolve;
  });
  let held = false;
  const runner: CommandRunner = {
    run: async (spec) => {
      if (!held && match(spec)) {
        held = true;
        started();
        await gate;
      }
      return inner.run(spec);
    },
  };
  return { runner, running, open };
}
const GiB = 1024 ** 3;

/** Real thin_delta output: pool metadata built by thin_restore, diffed by thin_delta itself. */
function realThinDelta(dir: string, verbose: boolean): string {
  const xml = `<superblock uuid="" time="2" transaction="3" flags="0" version="2" data_block_size="128" nr_data_blocks="4096">
  <device dev_id="7" mapped_blocks="6" transaction="1" creation_time="1" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="4" time="0"/>
    <range_mapping origin_begin="10" data_begin="10" length="2" time="0"/>
  </device>
  <device dev_id="8" mapped_blocks="7" transaction="2" creation_time="2" snap_time="2">
    <range_mapping origin_begin="0" data_begin="0" length="2" time="0"/>
    <single_mapping origin_block="2" data_block="20" time="2"/>
    <single_mapping origin_block="3" data_block="3" time="0"/>
    <range_mapping origin_begin="10" data_begin="10" length="1" time="0"/>
    <range_mapping origin_begin="100" data_begin="21" length="2" time="2"/>
  </device>
</superblock>`;
  writeFileSync(join(dir, "meta.xml"), xml);
  const meta = join(dir, "tmeta.bin");
  sh("truncate", ["-s", "8M", meta]);
  sh("thin_restore", ["-i", join(dir, "meta.xml"), "-o", meta]);
  return sh("thin_delta", [...(verbose ? ["--verbose"] : []), "--snap1", "7", "--snap2", "8", meta]);
}

// 64 KiB thin blocks: block 2 rewritten, block 11 discarded, blocks 100-101 new.
const EXPECTED_CHANGED = [
  { offset: 2 * 65536, length: 65536 },
  { offset: 11 * 65536, length: 65536 },
  { offset: 100 * 65536, length: 2 * 65536 },
];

describe("thin_delta parsing (real thin_delta over thin_restore-built pool metadata)", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => dir.cleanup());

  it("turns compact and --verbose output into the same changed byte ranges", () => {
    for (const verbose of [false, true]) {
      const delta = parseThinDelta(realThinDelta(dir.path, verbose));
      expect(delta).toMatchObject({ blockBytes: 65536, left: 7, right: 8, changed: EXPECTED_CHANGED });
      expect(delta.same).toEqual([
        { offset: 0, length: 2 * 65536 },
        { offset: 3 * 65536, length: 65536 },
        { offset: 10 * 65536, length: 65536 },
      ]);
    }
  });

  it("rejects output that is not a thin_delta report", () => {
    expect(() => parseThinDelta("")).toThrow(/lacks/);
    expect(() =>
      parseThinDelta('<superblock data_block_size="x"><diff left="1" right="2"/></superblock>'),
    ).toThrow(/data_block_size/);
    expect(() =>
      parseThinDelta('<superblock data_block_size="128"><diff left="1" right="2"><bogus/></diff>'),
    ).toThrow(/unexpected element/);
  });
});

describe("LVM providers by command construction (no device-mapper on this kernel)", () => {
  let dir: ReturnType<typeof tempDir>;
  let runner: ScriptedRunner;
  let ctx: ProviderContext;
  beforeEach(() => {
    dir = tempDir();
    runner = new ScriptedRunner();
    ctx = { runner, journal: SnapshotJournal.inDirectory(dir.path), releases: new ReleaseRegistry() };
  });
  afterEach(() => dir.cleanup());

  const isCmd = (command: string) => (spec: { command: string }) => spec.command === command;
  const snapName = () => runner.calls.find((c) => c.command === "lvcreate")!.args[2]!;

  it("lvm: lvcreate -s -L with the agent tag, overflow check, lvremove -y", async () => {
    runner
      .on(isCmd("lvcreate"))
      .on((c) => c.command === "lvs" && c.args.includes("lv_name,vg_name,lv_size,lv_attr"), {
        stdout: lvsJson([{ lv_name: "x", vg_name: "vg0", lv_size: String(20 * GiB), lv_attr: "swi-a-s---" }]),
      })
      .on((c) => c.command === "lvs" && c.args.includes("lv_name,vg_name,lv_attr,data_percent"), {
        stdout: lvsJson([{ lv_name: "x", vg_name: "vg0", lv_attr: "swi-a-s---", data_percent: "3.20" }]),
      })
      .on(isCmd("lvremove"));
    const provider = new LvmProvider(ctx, { vg: "vg0", lv: "root", cowSize: "4G" });
    let seen: { path: string; size: number } | undefined;
    await withSnapshot(ctx, provider, "root", {}, async (snap) => {
      seen = { path: snap.devicePath, size: snap.size };
      expect(ctx.releases.size).toBe(1);
      return { value: null, commit: async () => {} };
    });
    const name = snapName();
    expect(name).toMatch(/^bulwark-snap-root-\d{8}T\d{9}Z$/);
    expect(seen).toEqual({ path: `/dev/vg0/${name}`, size: 20 * GiB });
    expect(runner.commandLines).toEqual([
      `lvcreate -s -n ${name} -L 4G --addtag bulwark-agent vg0/root`,
      `${LVS} lv_name,vg_name,lv_size,lv_attr vg0/${name}`,
      `${LVS} lv_name,vg_name,lv_attr,data_percent vg0/${name}`,
      `lvremove -y vg0/${name}`,
    ]);
    expect(ctx.releases.size).toBe(0);
    expect(await ctx.journal.list()).toEqual([]);
  });

  it("lvm: a SIGTERM during lvcreate removes the snapshot once lvcreate has ended", async () => {
    runner
      .on(isCmd("lvcreate"))
      .on((c) => c.command === "lvs" && c.args.includes("lv_name,vg_name,lv_size,lv_attr"), {
        stdout: lvsJson([{ lv_name: "x", vg_name: "vg0", lv_size: String(GiB), lv_attr: "swi-a-s---" }]),
      })
      .on(isCmd("lvremove"));
    const held = hold(runner, (c) => c.command === "lvcreate");
    const prepared = new LvmProvider(
      { ...ctx, runner: held.runner },
      { vg: "vg0", lv: "root", cowSize: "1G" },
    )
      .prepare("root")
      .catch(() => undefined);
    await held.running;
    // Registered before lvcreate ran; what the signal handler does:
    expect(ctx.releases.size).toBe(1);
    const released = ctx.releases.releaseAll();
    await new Promise((r) => setTimeout(r, 20));
    expect(runner.commandLines).toEqual([]); // nothing to remove while lvcreate still runs
    held.open();
    expect(await released).toEqual([]);
    await prepared;
    const name = snapName();
    expect(runner.commandLines).toContain(`lvremove -y vg0/${name}`);
    expect(runner.commandLines[0]).toBe(`lvcreate -s -n ${name} -L 1G --addtag bulwark-agent vg0/root`);
    expect(ctx.releases.size).toBe(0);
    expect(await ctx.journal.list()).toEqual([]);
  });

  it("lvm: a killed run's leftover snapshot of the same volume is removed before the new one", async () => {
    const leftover = { vg: "vg0", lv: "bulwark-snap-root-1" };
    await ctx.journal.add({ provider: "lvm", volumeKey: "root", retained: false, data: leftover });
    await ctx.journal.add({
      provider: "lvm",
      volumeKey: "var",
      retained: false,
      data: { vg: "vg0", lv: "bulwark-snap-var-1" },
    });
    runner
      .on([...LVS.split(" "), "lv_name,vg_name", "vg0/bulwark-snap-root-1"], {
        stdout: lvsJson([{ lv_name: "bulwark-snap-root-1", vg_name: "vg0" }]),
      })
      .on(["lvremove", "-y", "vg0/bulwark-snap-root-1"])
      .on(isCmd("lvcreate"))
      .on((c) => c.command === "lvs" && c.args.includes("lv_name,vg_name,lv_size,lv_attr"), {
        stdout: lvsJson([{ lv_name: "x", vg_name: "vg0", lv_size: String(GiB), lv_attr: "swi-a-s---" }]),
      });
    const provider = new LvmProvider(ctx, { vg: "vg0", lv: "root", cowSize: "1G" });
    const snap = await provider.prepare("root");
    expect(runner.commandLines.slice(0, 3)).toEqual([
      `${LVS} lv_name,vg_name vg0/bulwark-snap-root-1`,
      "lvremove -y vg0/bulwark-snap-root-1",
      `lvcreate -s -n ${snap.name} -L 1G --addtag bulwark-agent vg0/root`,
    ]);
    // Another volume's entry is not this backup's business (the cleanup command handles it).
    expect((await ctx.journal.list()).map((e) => e.data.lv)).toEqual(["bulwark-snap-var-1", snap.name]);
    runner.on(isCmd("lvremove"));
    await snap.release();
  });

  it("lvm: an overflowed snapshot is never committed and is still removed", async () => {
    runner
      .on(isCmd("lvcreate"))
      .on((c) => c.command === "lvs" && c.args.includes("lv_name,vg_name,lv_size,lv_attr"), {
        stdout: lvsJson([{ lv_name: "x", vg_name: "vg0", lv_size: "1073741824", lv_attr: "swi-a-s---" }]),
      })
      .on((c) => c.command === "lvs" && c.args.includes("lv_name,vg_name,lv_attr,data_percent"), {
        stdout: lvsJson([{ lv_name: "x", vg_name: "vg0", lv_attr: "swi-I-s---", data_percent: "100.00" }]),
      })
      .on(isCmd("lvremove"));
    let committed = false;
    await expect(
      withSnapshot(
        ctx,
        new LvmProvider(ctx, { vg: "vg0", lv: "root", cowSize: "1G" }),
        "root",
        {},
        async () => ({
          value: null,
          commit: async () => {
            committed = true;
          },
        }),
      ),
    ).rejects.toMatchObject({ code: "BULWARK_AGENT_SNAPSHOT_INCONSISTENT" });
    expect(committed).toBe(false);
    expect(runner.commandLines.at(-1)).toBe(`lvremove -y vg0/${snapName()}`);
  });

  it("lvm: a failed lvcreate reports the error and leaves nothing behind", async () => {
    runner.on(isCmd("lvcreate"), {
      exitCode: 5,
      stderr: "  Insufficient free space: 1024 extents needed, but only 3 available\n",
    });
    await expect(
      new LvmProvider(ctx, { vg: "vg0", lv: "root", cowSize: "4G" }).prepare("root"),
    ).rejects.toMatchObject({
      code: "BULWARK_AGENT_SNAPSHOT_FAILED",
      cause: expect.objectContaining({ message: expect.stringMatching(/Insufficient free space/) }),
    });
    expect(runner.commandLines).toHaveLength(1);
    expect(await ctx.journal.list()).toEqual([]);
  });

  it("refuses names and sizes that are not LVM's (no injection into argv)", () => {
    expect(() => new LvmProvider(ctx, { vg: "vg0", lv: "root;reboot", cowSize: "1G" })).toThrow(
      /valid LVM name/,
    );
    expect(() => new LvmProvider(ctx, { vg: "-vg", lv: "root", cowSize: "1G" })).toThrow(/valid LVM name/);
    expect(() => new LvmProvider(ctx, { vg: "vg0", lv: "root", cowSize: "1G --yes" })).toThrow(/-L size/);
    expect(dmName("vg-data", "thin-pool")).toBe("vg--data-thin--pool");
  });

  /** Scripts one thin prepare: snapshot `thinId` of vg/lv in pool0 with 64 KiB chunks. */
  function scriptThinPrepare(vg: string, thinId: number): void {
    runner
      .on(isCmd("lvcreate"))
      .on((c) => c.command === "lvchange" && c.args[0] === "-ay")
      .on((c) => c.command === "lvs" && c.args.includes("lv_name,vg_name,lv_size,pool_lv,thin_id"), {
        stdout: lvsJson([
          { lv_name: "x", vg_name: vg, lv_size: String(8 * GiB), pool_lv: "pool0", thin_id: String(thinId) },
        ]),
      })
      .on((c) => c.command === "lvs" && c.args.includes("lv_name,vg_name,chunk_size"), {
        stdout: lvsJson([{ lv_name: "pool0", vg_name: vg, chunk_size: "65536" }]),
      });
  }

  it("lvm-thin: a SIGTERM during thin_delta releases the pool's metadata snapshot, then the new snapshot; the base stays", async () => {
    const vg = "vg-data";
    const base = "bulwark-thin-home-20260101T000000000Z";
    await ctx.journal.add({
      provider: "lvm-thin",
      volumeKey: "home",
      retained: true,
      data: { vg, lv: base, origin: "home", thinId: "7", pool: "pool0" },
    });
    scriptThinPrepare(vg, 8);
    runner
      .on((c) => c.command === "lvs" && c.args.includes("lv_name,vg_name,thin_id"), {
        stdout: lvsJson([{ lv_name: base, vg_name: vg, thin_id: "7" }]),
      })
      .on(["dmsetup", "message", "vg--data-pool0-tpool", "0", "reserve_metadata_snap"])
      .on(isCmd("thin_delta"), { stdout: realThinDelta(dir.path, false) })
      .on(["dmsetup", "message", "vg--data-pool0-tpool", "0", "release_metadata_snap"])
      .on(isCmd("lvremove"));
    const held = hold(runner, (c) => c.command === "thin_delta");
    const hctx = { ...ctx, runner: held.runner };
    const backup = withSnapshot(
      hctx,
      new LvmThinProvider(hctx, { vg, lv: "home" }),
      "home",
      {},
      async (snap) => {
        await snap.changedRanges();
        throw new Error("stopped by the signal");
      },
    ).catch((err: Error) => err.message);
    await held.running;
    expect(ctx.releases.size).toBe(2); // the snapshot and the pool's metadata snapshot
    expect(await ctx.releases.releaseAll()).toEqual([]);
    held.open();
    expect(await backup).toBe("stopped by the signal");
    const next = snapName();
    expect(runner.commandLines.slice(5)).toEqual([
      "dmsetup message vg--data-pool0-tpool 0 reserve_metadata_snap",
      "dmsetup message vg--data-pool0-tpool 0 release_metadata_snap",
      `lvremove -y ${vg}/${next}`,
      "thin_delta --metadata-snap --snap1 7 --snap2 8 /dev/mapper/vg--data-pool0_tmeta",
    ]);
    expect(runner.pending).toBe(0);
    expect(ctx.releases.size).toBe(0);
    expect((await ctx.journal.list()).map((e) => [e.data.lv, e.retained])).toEqual([[base, true]]);
  });

  it("lvm-thin: keeps the committed snapshot as base, and thin_delta against it gives the changed ranges", async () => {
    const provider = new LvmThinProvider(ctx, { vg: "vg-data", lv: "home" });
    // First backup: no base yet, so no CBT; the snapshot is kept (deactivated) after commit.
    scriptThinPrepare("vg-data", 7);
    runner.on((c) => c.command === "lvchange" && c.args[0] === "-an");
    const first = await withSnapshot(ctx, provider, "home", {}, async (snap) => ({
      value: await snap.changedRanges(),
      commit: async () => {},
    }));
    expect(first.value).toBeUndefined();
    const base = snapName();
    expect(base).toMatch(/^bulwark-thin-home-/);
    expect(runner.commandLines).toEqual([
      `lvcreate -s -n ${base} --addtag bulwark-agent vg-data/home`,
      `lvchange -ay -K vg-data/${base}`,
      `${LVS} lv_name,vg_name,lv_size,pool_lv,thin_id vg-data/${base}`,
      `${LVS} lv_name,vg_name,chunk_size vg-data/pool0`,
      `lvchange -an vg-data/${base}`,
    ]);
    expect(
      (await ctx.journal.list()).map((e) => ({ lv: e.data.lv, retained: e.retained, thinId: e.data.thinId })),
    ).toEqual([{ lv: base, retained: true, thinId: "7" }]);

    // Second backup: CBT through a reserved metadata snapshot, then the old base is dropped.
    runner.calls.length = 0;
    await new Promise((r) => setTimeout(r, 5)); // snapshot names carry the millisecond
    scriptThinPrepare("vg-data", 8);
    runner
      .on([...LVS.split(" "), "lv_name,vg_name,thin_id", `vg-data/${base}`], {
        stdout: lvsJson([{ lv_name: base, vg_name: "vg-data", thin_id: "7" }]),
      })
      .on(["dmsetup", "message", "vg--data-pool0-tpool", "0", "reserve_metadata_snap"])
      .on(isCmd("thin_delta"), { stdout: realThinDelta(dir.path, false) })
      .on(["dmsetup", "message", "vg--data-pool0-tpool", "0", "release_metadata_snap"])
      .on((c) => c.command === "lvs" && c.args.at(-1) === `vg-data/${base}`, {
        stdout: lvsJson([{ lv_name: base, vg_name: "vg-data" }]),
      })
      .on(["lvremove", "-y", `vg-data/${base}`])
      .on((c) => c.command === "lvchange" && c.args[0] === "-an");
    const second = await withSnapshot(ctx, provider, "home", {}, async (snap) => ({
      value: await snap.changedRanges(),
      commit: async () => {},
    }));
    const next = snapName();
    expect(second.value).toEqual({ baseSnapshot: base, changed: EXPECTED_CHANGED });
    expect(runner.commandLines.slice(4, 8)).toEqual([
      `${LVS} lv_name,vg_name,thin_id vg-data/${base}`,
      "dmsetup message vg--data-pool0-tpool 0 reserve_metadata_snap",
      "thin_delta --metadata-snap --snap1 7 --snap2 8 /dev/mapper/vg--data-pool0_tmeta",
      "dmsetup message vg--data-pool0-tpool 0 release_metadata_snap",
    ]);
    expect(runner.commandLines.slice(8)).toEqual([
      `${LVS} lv_name,vg_name vg-data/${base}`,
      `lvremove -y vg-data/${base}`,
      `lvchange -an vg-data/${next}`,
    ]);
    expect((await ctx.journal.list()).map((e) => [e.data.lv, e.retained])).toEqual([[next, true]]);
    expect(runner.pending).toBe(0);

    // Third backup fails: the new snapshot goes, the base stays for the retry; the metadata
    // snapshot is released even though thin_delta failed.
    runner.calls.length = 0;
    await new Promise((r) => setTimeout(r, 5));
    scriptThinPrepare("vg-data", 9);
    runner
      .on((c) => c.command === "lvs" && c.args.includes("lv_name,vg_name,thin_id"), {
        stdout: lvsJson([{ lv_name: next, vg_name: "vg-data", thin_id: "8" }]),
      })
      .on((c) => c.command === "dmsetup" && c.args[3] === "reserve_metadata_snap")
      .on(isCmd("thin_delta"), { exitCode: 1, stderr: "metadata snapshot not present" })
      .on((c) => c.command === "dmsetup" && c.args[3] === "release_metadata_snap")
      .on(isCmd("lvremove"));
    await expect(
      withSnapshot(ctx, provider, "home", {}, async (snap) => ({
        value: await snap.changedRanges(),
        commit: async () => {},
      })),
    ).rejects.toMatchObject({ code: "BULWARK_AGENT_COMMAND_FAILED" });
    expect(runner.commandLines.slice(-2)).toEqual([
      "dmsetup message vg--data-pool0-tpool 0 release_metadata_snap",
      `lvremove -y vg-data/${snapName()}`,
    ]);
    expect((await ctx.journal.list()).map((e) => [e.data.lv, e.retained])).toEqual([[next, true]]);
  });

  it("lvm-thin: a base that disappeared means no CBT (hash everything), not a failed backup", async () => {
    await ctx.journal.add({
      provider: "lvm-thin",
      volumeKey: "home",
      retained: true,
      data: { vg: "vg0", lv: "bulwark-thin-home-old", origin: "home", thinId: "3", pool: "pool0" },
    });
    scriptThinPrepare("vg0", 4);
    runner
      .on((c) => c.command === "lvs" && c.args.at(-1) === "vg0/bulwark-thin-home-old", {
        stdout: lvsJson([]),
      })
      .on((c) => c.command === "lvchange" && c.args[0] === "-an");
    const result = await withSnapshot(
      ctx,
      new LvmThinProvider(ctx, { vg: "vg0", lv: "home" }),
      "home",
      {},
      async (snap) => ({
        value: { changed: await snap.changedRanges(), lost: snap.changeTrackingLost },
        commit: async () => {},
      }),
    );
    expect(result.value.changed).toBeUndefined();
    // Said, not silent: the backup report carries this as a warning.
    expect(result.value.lost).toBe(
      "the kept base snapshot vg0/bulwark-thin-home-old (thin id 3) is gone: no thin_delta, hashing instead",
    );
    expect(runner.commandLines.some((l) => l.startsWith("thin_delta") || l.startsWith("dmsetup"))).toBe(
      false,
    );
    expect((await ctx.journal.list()).map((e) => [e.data.lv, e.retained])).toEqual([[snapName(), true]]);
  });

  it("stale cleanup: journal leftovers and tagged orphans go, retained thin bases stay", async () => {
    await ctx.journal.add({
      provider: "lvm",
      volumeKey: "root",
      retained: false,
      data: { vg: "vg0", lv: "bulwark-snap-root-1" },
    });
    await ctx.journal.add({
      provider: "lvm-thin",
      volumeKey: "home",
      retained: true,
      data: { vg: "vg0", lv: "bulwark-thin-home-1", origin: "home", thinId: "4", pool: "pool0" },
    });
    runner
      .on([...LVS.split(" "), "lv_name,vg_name", "vg0/bulwark-snap-root-1"], {
        stdout: lvsJson([{ lv_name: "bulwark-snap-root-1", vg_name: "vg0" }]),
      })
      .on(["lvremove", "-y", "vg0/bulwark-snap-root-1"])
      .on([...LVS.split(" "), "lv_name,vg_name,lv_tags,origin,thin_id", "@bulwark-agent"], {
        stdout: lvsJson([
          {
            lv_name: "bulwark-thin-home-1",
            vg_name: "vg0",
            lv_tags: "bulwark-agent",
            origin: "home",
            thin_id: "4",
          },
          {
            lv_name: "bulwark-snap-var-9",
            vg_name: "vg0",
            lv_tags: "bulwark-agent",
            origin: "var",
            thin_id: "",
          },
        ]),
      })
      .on(["lvremove", "-y", "vg0/bulwark-snap-var-9"]);
    const result = await cleanupStaleSnapshots(ctx, { scanLvm: true });
    expect(result).toEqual({
      cleaned: ["lvm:bulwark-snap-root-1", "lvm-scan:vg0/bulwark-snap-var-9"],
      failed: [],
    });
    expect(runner.pending).toBe(0);
    expect((await ctx.journal.list()).map((e) => e.data.lv)).toEqual(["bulwark-thin-home-1"]);
  });
});
