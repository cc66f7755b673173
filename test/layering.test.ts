// The layering rules (.dependency-cruiser.cjs, run by `pnpm lint`) must be able to fail: this runs
// the real dependency-cruiser with the project's config over small trees that break each rule.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { repoRoot } from "./support/processes.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function cruise(files: Record<string, string>): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), "bulwark-layering-"));
  dirs.push(dir);
  writeFileSync(join(dir, "tsconfig.base.json"), JSON.stringify({ compilerOptions: { module: "NodeNext" } }));
  mkdirSync(join(dir, "apps"));
  mkdirSync(join(dir, "packages"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  const run = spawnSync(
    join(repoRoot, "node_modules/.bin/depcruise"),
    ["--config", join(repoRoot, ".dependency-cruiser.cjs"), "apps", "packages"],
    { cwd: dir, encoding: "utf8" },
  );
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("layering rules", () => {
  it("pass a tree that respects them", () => {
    const r = cruise({
      "packages/lib/src/index.ts": "export const x = 1;\n",
      "apps/tool/src/main.ts": 'import { x } from "../../../packages/lib/src/index.js";\nconsole.log(x);\n',
    });
    expect(r.output).toContain("no dependency violations");
    expect(r.status).toBe(0);
  });

  it("fail when a package imports an app", () => {
    const r = cruise({
      "apps/tool/src/main.ts": "export const y = 1;\n",
      "packages/lib/src/index.ts":
        'import { y } from "../../../apps/tool/src/main.js";\nexport const x = y;\n',
    });
    expect(r.status).not.toBe(0);
    expect(r.output).toContain("packages-not-to-apps");
  });

  it("fail on an import cycle", () => {
    const r = cruise({
      "packages/lib/src/a.ts": 'import { b } from "./b.js";\nexport const a = () => b;\n',
      "packages/lib/src/b.ts": 'import { a } from "./a.js";\nexport const b = () => a;\n',
    });
    expect(r.status).not.toBe(0);
    expect(r.output).toContain("no-circular");
  });

  it("fail when an app imports another app", () => {
    const r = cruise({
      "apps/one/src/main.ts": "export const one = 1;\n",
      "apps/two/src/main.ts": 'import { one } from "../../one/src/main.js";\nexport const two = one;\n',
    });
    expect(r.status).not.toBe(0);
    expect(r.output).toContain("apps-not-into-each-other");
  });
});
