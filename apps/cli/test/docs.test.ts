import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { COMMANDS, EXIT, synopsis } from "../src/index.js";

const doc = readFileSync(fileURLToPath(new URL("../../../docs/cli.md", import.meta.url)), "utf8");

describe("docs/cli.md", () => {
  it("documents every command with its current synopsis and each option", () => {
    for (const command of COMMANDS) {
      const name = command.path.join(" ");
      expect(doc, name).toContain(`#### \`bulwark ${name}\``);
      expect(doc, name).toContain(synopsis(command));
      for (const option of Object.keys(command.options))
        expect(doc, `${name} --${option}`).toContain(`--${option}`);
    }
  });

  it("documents no command that does not exist", () => {
    const names = new Set(COMMANDS.map((c) => c.path.join(" ")));
    const documented = [...doc.matchAll(/^#### `bulwark ([^`]+)`$/gm)].map((m) => m[1]!);
    expect(documented.filter((d) => !names.has(d))).toEqual([]);
  });

  it("lists every exit code", () => {
    for (const code of Object.values(EXIT)) expect(doc).toMatch(new RegExp(`^\\| ${code} \\| `, "m"));
  });
});
