import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  cleanupStaleSnapshots,
  DeviceProvider,
  FileProvider,
  ProcessCommandRunner,
  type ProviderContext,
  planVolume,
  ReleaseRegistry,
  readOffsets,
  SnapshotJournal,
  withSnapshot,
} from "../src/index.js";
import { isRoot, LoopDevices, MiB, ROOT_REASON, sh, tempDir } from "./helpers/system.js";

const CHUNK = MiB;
const fixture = fileURLToPath(new URL("./fixtures/hold-frozen.ts", import.meta.url));
const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));

function makeExt4(image: string, size: number, tree: string): void {
  sh("truncate", ["-s", String(size), image]);
  sh("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "4096", "-d", tree, image]);
}

/** A writer that blocks while the filesystem is frozen: it must not finish before the thaw. */
function startWriter(path: string): { child: ChildProcess; done: Promise<number | null> } {
  const child = spawn("touch", [path]);
  const done = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, done };
}

/** Whether `p` settles within `ms`: 300 ms to show a write is held, 30 s to wait for one to finish
 *  (spawning `touch` can take seconds on a loaded 2-core machine). */
async function settled(p: Promise<unknown>, ms: number): Promise<boolean> {
  return Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
}

function context(stateDir: string): ProviderContext {
  return {
    runner: new ProcessCommandRunner(),
    journal: SnapshotJournal.inDirectory(stateDir),
    releases: new ReleaseRegistry(),
  };
}

describe.skipIf(!isRoot)(`device provider on real loop devices (${ROOT_REASON})`, () => {
  let dir: ReturnType<typeof tempDir>;
  let loops: LoopDevices;
  let image: string;
  let mnt: string;
  const files: Record<string, Buffer> = {};

  beforeEach(() => {
    dir = tempDir();
    loops = new LoopDevices();
    const tree = join(dir.path, "tree");
    mkdirSync(join(tree, "docs"), { recursive: true });
    files["big.bin"] = randomBytes(6 * MiB);
    files["docs/note.txt"] = Buffer.from("hello\n");
    for (const [name, data] of Object.entries(files)) writeFileSync(join(tree, name), data);
    image = join(dir.path, "vol.img");
    makeExt4(image, 96 * MiB, tree);
    mnt = join(dir.path, "mnt");
    mkdirSync(mnt);
  });

  afterEach(() => {
    loops.cleanup();
    dir.cleanup();
  });

  it("reads an unmounted ext4 loop device through the bitmap plan, byte-identical to the image", async () => {
    const dev = loops.attach(image);
    const ctx = context(join(dir.path, "state"));
    const result = await withSnapshot(
      ctx,
      new DeviceProvider(ctx, { devicePath: dev }),
      "vol",
      {},
      async (snap) => {
        expect(snap.consistency).toBe("unmounted");
        expect(snap.size).toBe(96 * MiB);
        const source = await snap.open();
        const { plan, filesystem } = await planVolume(source, { chunkSize: CHUNK });
        const bytes = readFileSync(image);
        for (const { offset, length } of readOffsets(plan)) {
          expect((await source.read(offset, length)).equals(bytes.subarray(offset, offset + length))).toBe(
            true,
          );
        }
        return { value: { plan, filesystem }, commit: async () => {} };
      },
    );
    expect(result.value.filesystem).toBe("ext4");
    expect(result.value.plan.method).toBe("bitmap+hash");
    // 6 MiB of files plus metadata and journal out of 96 MiB.
    expect(result.value.plan.bytesToRead).toBeLessThan(24 * MiB);
    expect(await ctx.journal.list()).toEqual([]);
    expect(ctx.releases.size).toBe(0);
  });

  it("freezes a mounted filesystem for the read (clean journal, bitmap usable) and thaws on release", async () => {
    const dev = loops.attach(image);
    loops.mount(dev, mnt);
    appendFileSync(join(mnt, "docs/note.txt"), "written while mounted\n");
    const ctx = context(join(dir.path, "state"));
    let writer: ReturnType<typeof startWriter> | undefined;
    const result = await withSnapshot(
      ctx,
      new DeviceProvider(ctx, { devicePath: dev, freeze: mnt }),
      "vol",
      {},
      async (snap) => {
        expect(snap.consistency).toBe("frozen");
        writer = startWriter(join(mnt, "during-freeze"));
        expect(await settled(writer.done, 300), "a write finished while frozen").toBe(false);
        const { plan, bitmapSkipped } = await planVolume(await snap.open(), { chunkSize: CHUNK });
        return { value: { plan, bitmapSkipped }, commit: async () => {} };
      },
    );
    // Freezing flushed the journal and cleared needs_recovery, so the bitmap was trusted.
    expect(result.value.bitmapSkipped).toBeUndefined();
    expect(result.value.plan.method).toBe("bitmap+hash");
    expect(await settled(writer!.done, 30_000)).toBe(true);
    expect(await writer!.done).toBe(0);
  });

  it("without a freeze a mounted ext4 has a dirty journal, so the plan falls back to reading everything", async () => {
    const dev = loops.attach(image);
    loops.mount(dev, mnt);
    const ctx = context(join(dir.path, "state"));
    const result = await withSnapshot(
      ctx,
      new DeviceProvider(ctx, { devicePath: dev }),
      "vol",
      {},
      async (snap) => {
        expect(snap.consistency).toBe("none");
        return { value: await planVolume(await snap.open(), { chunkSize: CHUNK }), commit: async () => {} };
      },
    );
    expect(result.value.plan.method).toBe("full+hash");
    expect(result.value.bitmapSkipped).toMatch(/BULWARK_FS_UNSUPPORTED.*recovery/);
  });

  it("thaws when the read fails, and when the freeze limit passes refuses to commit", async () => {
    const dev = loops.attach(image);
    loops.mount(dev, mnt);
    const ctx = context(join(dir.path, "state"));
    await expect(
      withSnapshot(ctx, new DeviceProvider(ctx, { devicePath: dev, freeze: mnt }), "vol", {}, async () => {
        throw new Error("upload failed");
      }),
    ).rejects.toThrow("upload failed");
    const w1 = startWriter(join(mnt, "after-failure"));
    expect(await settled(w1.done, 30_000)).toBe(true);

    let committed = false;
    const provider = new DeviceProvider(ctx, { devicePath: dev, freeze: mnt, maxFreezeMs: 200 });
    await expect(
      withSnapshot(ctx, provider, "vol", {}, async () => {
        await new Promise((r) => setTimeout(r, 600));
        return {
          value: null,
          commit: async () => {
            committed = true;
          },
        };
      }),
    ).rejects.toMatchObject({ code: "BULWARK_AGENT_SNAPSHOT_INCONSISTENT" });
    expect(committed).toBe(false);
    const w2 = startWriter(join(mnt, "after-limit"));
    expect(await settled(w2.done, 30_000)).toBe(true);
    expect(await ctx.journal.list()).toEqual([]);
  });

  async function frozenChild(stateDir: string, dev: string): Promise<ChildProcess> {
    const child = spawn(
      process.execPath,
      ["--conditions=source", "--import", "tsx", fixture, dev, mnt, stateDir],
      {
        cwd: repoRoot,
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on("data", (d: Buffer) => d.toString().includes("frozen") && resolve());
      child.on("exit", (code) => reject(new Error(`child exited ${code} before freezing`)));
    });
    return child;
  }

  it("SIGTERM: the process-level registry thaws the filesystem and clears the journal before exit", async () => {
    const dev = loops.attach(image);
    loops.mount(dev, mnt);
    const stateDir = join(dir.path, "state");
    const child = await frozenChild(stateDir, dev);
    const w = startWriter(join(mnt, "blocked"));
    expect(await settled(w.done, 300)).toBe(false);
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(143);
    expect(await settled(w.done, 30_000)).toBe(true);
    expect(await SnapshotJournal.inDirectory(stateDir).list()).toEqual([]);
  });

  it("SIGKILL leaves the filesystem frozen; the next start's stale cleanup thaws it from the journal", async () => {
    const dev = loops.attach(image);
    loops.mount(dev, mnt);
    const stateDir = join(dir.path, "state");
    const child = await frozenChild(stateDir, dev);
    const exited = new Promise((r) => child.on("exit", r));
    child.kill("SIGKILL");
    await exited;
    const journal = SnapshotJournal.inDirectory(stateDir);
    expect((await journal.list()).map((e) => e.data.freeze)).toEqual([mnt]);
    const w = startWriter(join(mnt, "blocked"));
    expect(await settled(w.done, 300)).toBe(false);
    const result = await cleanupStaleSnapshots(context(stateDir), { scanLvm: false });
    expect(result.failed).toEqual([]);
    expect(result.cleaned).toEqual([`device:${mnt}`]);
    expect(await settled(w.done, 30_000)).toBe(true);
    expect(await journal.list()).toEqual([]);
  });
});

describe("file provider on a real image", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => dir.cleanup());

  it("reads the image through the bitmap plan and rejects a read during which the file changed", async () => {
    const tree = join(dir.path, "tree");
    mkdirSync(tree);
    writeFileSync(join(tree, "a.bin"), randomBytes(2 * MiB));
    const image = join(dir.path, "disk.img");
    makeExt4(image, 32 * MiB, tree);
    const ctx = context(join(dir.path, "state"));
    const ok = await withSnapshot(ctx, new FileProvider(ctx, { path: image }), "img", {}, async (snap) => {
      expect(snap.consistency).toBe("unchanged-file");
      return { value: await planVolume(await snap.open(), { chunkSize: CHUNK }), commit: async () => {} };
    });
    expect(ok.value.plan.method).toBe("bitmap+hash");

    await expect(
      withSnapshot(ctx, new FileProvider(ctx, { path: image }), "img", {}, async () => {
        appendFileSync(image, Buffer.alloc(4096));
        return { value: null, commit: async () => {} };
      }),
    ).rejects.toMatchObject({ code: "BULWARK_AGENT_SNAPSHOT_INCONSISTENT" });
    expect(await ctx.journal.list()).toEqual([]);
  });

  it("runs pre and post hooks around the snapshot; a failing pre hook takes no snapshot", async () => {
    const image = join(dir.path, "raw.img");
    writeFileSync(image, randomBytes(64 * 1024));
    const log = join(dir.path, "hooks.log");
    const hook = (phase: string) => ({
      argv: ["/bin/sh", "-c", `echo ${phase} $BULWARK_HOOK_PHASE $BULWARK_SNAPSHOT >> ${log}`],
    });
    const ctx = context(join(dir.path, "state"));
    await withSnapshot(
      ctx,
      new FileProvider(ctx, { path: image }),
      "raw",
      { pre: hook("pre"), post: hook("post") },
      async () => ({
        value: null,
        commit: async () => {},
      }),
    );
    expect(readFileSync(log, "utf8")).toBe("pre pre\npost post taken\n");

    writeFileSync(log, "");
    let read = false;
    await expect(
      withSnapshot(
        ctx,
        new FileProvider(ctx, { path: image }),
        "raw",
        { pre: { argv: ["/bin/sh", "-c", "echo quiesce failed >&2; exit 3"] }, post: hook("post") },
        async () => {
          read = true;
          return { value: null, commit: async () => {} };
        },
      ),
    ).rejects.toMatchObject({
      code: "BULWARK_AGENT_HOOK_FAILED",
      message: expect.stringMatching(/quiesce failed/),
    });
    expect(read).toBe(false);
    expect(readFileSync(log, "utf8")).toBe("post post failed\n");
    expect(await ctx.journal.list()).toEqual([]);
  });
});
