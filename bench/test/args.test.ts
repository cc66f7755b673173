import { describe, expect, it } from "vitest";
import { DEFAULT_SIZE, parseBenchArgs, parseSize, QUICK_SIZE } from "../src/args.js";
import { displayCommand } from "../src/scenarios.js";

const defaults = { workDir: "/w", docs: "/d.md" };

describe("bench arguments", () => {
  it("parses sizes in binary units", () => {
    expect(parseSize("2G")).toBe(2 * 1024 ** 3);
    expect(parseSize("2GiB")).toBe(2 * 1024 ** 3);
    expect(parseSize("512m")).toBe(512 * 1024 ** 2);
    expect(parseSize("1.5G")).toBe(1.5 * 1024 ** 3);
    expect(parseSize("4096")).toBe(4096);
    for (const bad of ["", "G", "-1G", "2X", "0"]) expect(() => parseSize(bad), bad).toThrow();
  });

  it("defaults to a 2 GiB image with all tools, restic first", () => {
    const opts = parseBenchArgs([], defaults);
    expect(opts).toMatchObject({
      size: DEFAULT_SIZE,
      writes: 1000,
      tools: ["restic", "borg", "bulwark", "bulwark-agent"],
      docs: "/d.md",
      databaseUrl: "postgresql://postgres@127.0.0.1:5432/postgres",
      agentStreams: undefined,
    });
    expect(parseBenchArgs(["--agent-streams", "4"], defaults)).toMatchObject({ agentStreams: 4 });
    expect(() => parseBenchArgs(["--agent-streams", "0"], defaults)).toThrow(/agent-streams/);
    expect(parseBenchArgs(["--quick"], defaults)).toMatchObject({ size: QUICK_SIZE });
    expect(parseBenchArgs(["--quick", "--size", "1G"], defaults)).toMatchObject({ size: 1024 ** 3 });
  });

  it("always includes the restic baseline and rejects unknown tools and options", () => {
    expect(parseBenchArgs(["--tools", "bulwark"], defaults)).toMatchObject({ tools: ["restic", "bulwark"] });
    expect(() => parseBenchArgs(["--tools", "duplicity"], defaults)).toThrow(/unknown tool/);
    expect(() => parseBenchArgs(["--sise", "1G"], defaults)).toThrow();
    expect(() => parseBenchArgs(["--fill", "0.99"], defaults)).toThrow();
    expect(parseBenchArgs(["--no-docs"], defaults)).toMatchObject({ docs: undefined });
  });

  it("shows commands with $WORK and without the passphrase", () => {
    const shown = displayCommand(
      {
        argv: ["borg", "extract", "::x", "tmp/run-1/image.img"],
        env: { BORG_PASSPHRASE: "s3cret" },
        cwd: "/tmp/run-1/out",
      },
      "/tmp/run-1",
      "s3cret",
    );
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
    expect(shown).toBe("(cd $WORK/out && BORG_PASSPHRASE=<passphrase> borg extract ::x ${WORK#/}/image.img)");
  });
});
