import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BulwarkError } from "@bulwark/errors";
import { describe, expect, it } from "vitest";
import { type CommandSpec, defineCommand } from "../src/command.js";
import { COMMANDS } from "../src/commands/index.js";
import { EXIT } from "../src/exit-codes.js";
import { commandHelp, overviewHelp, parseCommandLine, synopsis } from "../src/parse-argv.js";
import { run } from "../src/run.js";

const seen: unknown[] = [];
const commands: CommandSpec[] = [
  defineCommand({
    path: ["agents", "ls"],
    summary: "list machines",
    args: [],
    options: {
      group: { type: "string", valueName: "name", description: "only this group" },
      tag: { type: "string", multiple: true, description: "only with this tag" },
      long: { type: "boolean", short: "l", description: "more columns" },
    },
    async run(_ctx, input) {
      seen.push(input);
      // Typed from the declaration: string | undefined, string[], boolean.
      const group: string | undefined = input.options.group;
      const tags: string[] = input.options.tag;
      const long: boolean = input.options.long;
      return { data: { group, tags, long }, text: `agents ${group ?? "-"} ${tags.join(",")} ${long}` };
    },
  }),
  defineCommand({
    path: ["files", "get"],
    summary: "download files",
    args: ["restorePoint", "paths...", "out?"],
    options: {},
    async run(_ctx, input) {
      return { data: input.args, text: "" };
    },
  }),
  defineCommand({
    path: ["agents", "show"],
    summary: "one machine",
    args: ["id", "extra?"],
    options: {},
    async run(_ctx, input) {
      const id: string = input.args.id;
      const extra: string | undefined = input.args.extra;
      if (id === "boom") throw new BulwarkError("BULWARK_CLI_FILE", "local file problem");
      if (id === "job") throw new BulwarkError("BULWARK_CLI_JOB_FAILED", "job failed");
      return { data: { id, extra }, text: `agent ${id}` };
    },
  }),
];

function parse(argv: string[]) {
  return parseCommandLine(argv, commands);
}

function usageMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect((err as BulwarkError).code).toBe("BULWARK_CLI_USAGE");
    return (err as Error).message;
  }
  throw new Error("expected a usage error");
}

describe("parseCommandLine", () => {
  it("finds the command and types its options, with globals anywhere", () => {
    const parsed = parse([
      "--json",
      "agents",
      "ls",
      "--tag",
      "a",
      "--group",
      "g",
      "-l",
      "--tag",
      "b",
      "--server",
      "http://x",
    ]);
    expect(parsed).toMatchObject({
      kind: "command",
      options: { group: "g", tag: ["a", "b"], long: true },
      globals: { json: true, server: "http://x", help: false, tokenFile: undefined },
    });
    if (parsed.kind !== "command") throw new Error("unreachable");
    expect(parsed.command.path).toEqual(["agents", "ls"]);
    expect(parse(["agents", "ls"])).toMatchObject({ options: { group: undefined, tag: [], long: false } });
  });

  it("assigns required, variadic and optional arguments", () => {
    expect(parse(["agents", "show", "a1"])).toMatchObject({ args: { id: "a1", extra: undefined } });
    expect(parse(["agents", "show", "a1", "x"])).toMatchObject({ args: { id: "a1", extra: "x" } });
    expect(parse(["files", "get", "rp", "/a", "/b"])).toMatchObject({
      args: { restorePoint: "rp", paths: ["/a", "/b"] },
    });
  });

  it("refuses unknown options, missing and extra arguments, unknown commands", () => {
    expect(usageMessage(() => parse(["agents", "ls", "--grop", "x"]))).toContain("--grop");
    expect(usageMessage(() => parse(["agents", "ls", "--group"]))).toContain("--group");
    expect(usageMessage(() => parse(["agents", "show"]))).toBe("agents show: missing <id>");
    expect(usageMessage(() => parse(["agents", "show", "a", "b", "c"]))).toContain('unexpected argument "c"');
    expect(usageMessage(() => parse(["files", "get", "rp"]))).toBe("files get: missing <paths>");
    expect(usageMessage(() => parse(["frobnicate"]))).toBe('unknown command "frobnicate"');
    expect(usageMessage(() => parse(["agents", "rm", "x"]))).toBe('unknown command "agents rm"');
  });

  it("turns a bare group, no command and --help into help", () => {
    expect(parse([])).toMatchObject({ kind: "help", explicit: false });
    expect(parse(["--help"])).toMatchObject({ kind: "help", explicit: true });
    expect(parse(["agents"])).toMatchObject({ kind: "help", words: ["agents"], explicit: false });
    expect(parse(["agents", "ls", "-h"])).toMatchObject({ kind: "help", explicit: true });
    expect(parse(["help", "agents", "show"])).toMatchObject({ kind: "help", explicit: true });
  });

  it("writes help from the declaration", () => {
    expect(synopsis(commands[0]!)).toBe("bulwark agents ls [--group <name>] [--tag <tag>]... [-l, --long]");
    const help = commandHelp(commands[0]!);
    expect(help).toContain("--tag <tag>");
    expect(help).toContain("(repeatable)");
    expect(help).toContain("--token-file <file>");
    const overview = overviewHelp(commands, ["agents"]);
    expect(overview).toContain("agents ls");
    expect(overview).not.toContain("files get");
  });

  it("declares every real command once, each with a summary", () => {
    const names = COMMANDS.map((c) => c.path.join(" "));
    expect(new Set(names).size).toBe(names.length);
    for (const c of COMMANDS) expect(c.summary.length, c.path.join(" ")).toBeGreaterThan(0);
  });
});

describe("run", () => {
  const home = mkdtempSync(join(tmpdir(), "bulwark-cli-run-"));
  async function exec(argv: string[], env: Record<string, string | undefined> = {}) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await run(
      argv,
      { out: (t) => out.push(t), err: (t) => err.push(t), env: { XDG_CONFIG_HOME: home, ...env } },
      { commands },
    );
    return { code, out: out.join("\n"), err: err.join("\n") };
  }

  it("prints text, or the data as JSON with --json", async () => {
    expect(await exec(["agents", "ls", "--group", "g"])).toEqual({
      code: 0,
      out: "agents g  false",
      err: "",
    });
    const json = await exec(["agents", "ls", "--json", "--tag", "t"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out)).toEqual({ tags: ["t"], long: false });
  });

  it("exits 2 with the code on stderr for usage errors, 0 for asked-for help", async () => {
    const bad = await exec(["agents", "ls", "--nope"]);
    expect(bad.code).toBe(EXIT.USAGE);
    expect(bad.err).toMatch(/^bulwark: BULWARK_CLI_USAGE: Unknown option '--nope'/);
    expect(bad.out).toBe("");
    const group = await exec(["agents"]);
    expect(group.code).toBe(EXIT.USAGE);
    expect(group.err).toContain("agents show");
    const help = await exec(["agents", "show", "--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toContain("usage: bulwark agents show <id> [<extra>]");
  });

  it("maps the error's origin to the exit code and prints the error body with --json", async () => {
    const local = await exec(["agents", "show", "boom", "--json"]);
    expect(local.code).toBe(EXIT.LOCAL);
    expect(local.err).toBe("bulwark: BULWARK_CLI_FILE: local file problem");
    expect(JSON.parse(local.out)).toEqual({
      error: { code: "BULWARK_CLI_FILE", message: "local file problem" },
    });
    expect((await exec(["agents", "show", "job"])).code).toBe(EXIT.FAILED);
  });

  it("refuses a bad server URL from the environment as a local problem", async () => {
    const res = await exec(["agents", "show", "x"], { BULWARK_URL: "ftp://nope" });
    expect(res.code).toBe(EXIT.LOCAL);
    expect(res.err).toContain("BULWARK_CONFIG_INVALID");
  });
});
