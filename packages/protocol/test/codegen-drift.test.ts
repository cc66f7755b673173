import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

// The generated code is committed; this regenerates it from proto/ with the pinned buf and ts-proto
// and fails on any difference, so the .proto files and the TypeScript cannot drift apart.

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const committed = join(packageDir, "src/generated");
const scratch = mkdtempSync(join(tmpdir(), "bulwark-codegen-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function listFiles(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(root, join(entry.parentPath, entry.name)))
    .sort();
}

describe("generated code", () => {
  it("matches a fresh buf generate of proto/", () => {
    const buf = join(packageDir, "node_modules/.bin/buf");
    execFileSync(buf, ["generate", "../../proto", "--template", "../../proto/buf.gen.yaml", "-o", scratch], {
      cwd: packageDir,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const fresh = join(scratch, "src/generated");
    const files = listFiles(fresh);
    expect(files.length).toBeGreaterThan(0);
    expect(listFiles(committed), "files under src/generated").toEqual(files);
    for (const file of files) {
      const want = readFileSync(join(fresh, file), "utf8");
      const have = readFileSync(join(committed, file), "utf8");
      expect(
        have === want,
        `${file} differs from buf generate: run \`pnpm --filter @bulwark/protocol generate\``,
      ).toBe(true);
    }
  });

  it("passes buf lint (STANDARD + COMMENTS) and buf format", () => {
    const buf = join(packageDir, "node_modules/.bin/buf");
    execFileSync(buf, ["lint", "../../proto"], { cwd: packageDir, stdio: ["ignore", "pipe", "pipe"] });
    execFileSync(buf, ["format", "--diff", "--exit-code", "../../proto"], {
      cwd: packageDir,
      stdio: ["ignore", "pipe", "pipe"],
    });
  });
});
