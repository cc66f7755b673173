import { access, constants } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { run } from "./exec.js";

/** A program the bench runs and the Debian package that provides it. */
export interface Requirement {
  program: string;
  debianPackage: string;
}

export const BASE_REQUIREMENTS: Requirement[] = [
  { program: "/usr/bin/time", debianPackage: "time" },
  { program: "mke2fs", debianPackage: "e2fsprogs" },
  { program: "debugfs", debianPackage: "e2fsprogs" },
  { program: "dumpe2fs", debianPackage: "e2fsprogs" },
];

export async function which(program: string): Promise<string | undefined> {
  const candidates = program.includes("/")
    ? [program]
    : (process.env.PATH ?? "").split(delimiter).flatMap((dir) => [join(dir, program)]);
  for (const dir of ["/usr/sbin", "/sbin"]) if (!program.includes("/")) candidates.push(join(dir, program));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/**
 * Installs the Debian packages for any missing program (as root: `apt-get update` then
 * `apt-get install -y`); anyone else gets an error that says exactly what to install.
 */
export async function ensurePrograms(
  requirements: Requirement[],
  log: (line: string) => void,
): Promise<void> {
  const missing: Requirement[] = [];
  for (const req of requirements) if (!(await which(req.program))) missing.push(req);
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((m) => m.debianPackage))];
  const command = `apt-get update && apt-get install -y ${packages.join(" ")}`;
  if (process.getuid?.() !== 0) {
    throw new Error(
      `missing ${missing.map((m) => m.program).join(", ")}; install them as root with:\n  ${command}\n` +
        "(the bench installs them itself when run as root)",
    );
  }
  log(`installing ${packages.join(", ")} (missing: ${missing.map((m) => m.program).join(", ")})`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  await run({ argv: ["apt-get", "update"], env });
  await run({ argv: ["apt-get", "install", "-y", "--no-install-recommends", ...packages], env });
  for (const req of missing) {
    if (!(await which(req.program)))
      throw new Error(`${req.program} still missing after installing ${req.debianPackage}`);
  }
}
