import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { COMMANDS, EXIT } from "../src/index.js";
import { commandReference, withReference } from "../src/reference.js";

const doc = readFileSync(fileURLToPath(new URL("../../../docs/cli.md", import.meta.url)), "utf8");

describe("docs/cli.md", () => {
  it("ends with the command reference generated from the declarations (pnpm --filter @bulwark/cli run docs)", () => {
    expect(doc).toBe(withReference(doc, COMMANDS));
  });

  it("every option table row has exactly two cells (a `|` in a value name such as <raw|qcow2|vhdx> is escaped)", () => {
    const rows = commandReference(COMMANDS)
      .split("\n")
      .filter((l) => l.startsWith("| `--"));
    expect(rows.some((r) => r.includes("<raw\\|qcow2\\|vhdx>"))).toBe(true);
    // Cells are split at pipes not preceded by a backslash, as GFM does.
    for (const row of rows) expect(row.split(/(?<!\\)\|/), row).toHaveLength(4);
  });

  it("lists every exit code", () => {
    for (const code of Object.values(EXIT)) expect(doc).toMatch(new RegExp(`^\\| ${code} \\| `, "m"));
  });
});
