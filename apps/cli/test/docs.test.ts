import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { COMMANDS, EXIT } from "../src/index.js";
import { withReference } from "../src/reference.js";

const doc = readFileSync(fileURLToPath(new URL("../../../docs/cli.md", import.meta.url)), "utf8");

describe("docs/cli.md", () => {
  it("ends with the command reference generated from the declarations (pnpm --filter @bulwark/cli run docs)", () => {
    expect(doc).toBe(withReference(doc, COMMANDS));
  });

  it("lists every exit code", () => {
    for (const code of Object.values(EXIT)) expect(doc).toMatch(new RegExp(`^\\| ${code} \\| `, "m"));
  });
});
