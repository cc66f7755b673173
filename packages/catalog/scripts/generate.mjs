// Generates the Prisma client into src/generated. `prisma generate` does not use the native schema
// engine, but the CLI insists on finding one and tries to download it (which fails offline); naming
// any existing file satisfies that check. See ../../shared/design.md, "Facts about this machine".
import { execFileSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const schema = join(root, "prisma", "schema.prisma");
const marker = join(root, "src", "generated", "prisma", "client.ts");

// Skip when the generated client is newer than the schema: typecheck and build both call this.
if (
  existsSync(marker) &&
  statSync(marker).mtimeMs >= statSync(schema).mtimeMs &&
  !process.argv.includes("--force")
) {
  process.exit(0);
}
execFileSync("pnpm", ["exec", "prisma", "generate", "--schema", schema], {
  cwd: root,
  stdio: ["ignore", "inherit", "inherit"],
  env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: process.execPath, PRISMA_HIDE_UPDATE_MESSAGE: "1" },
});
