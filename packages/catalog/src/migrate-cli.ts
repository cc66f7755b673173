// `pnpm db:migrate` and `pnpm db:migration:create <name>`; DATABASE_URL names the database.
import { BulwarkError } from "@bulwark/errors";
import { applyMigrations, createMigration } from "./migrations.js";

const DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bulwark";

async function main(argv: string[]): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
  const [command, name] = argv;
  if (command === "migrate") {
    const applied = await applyMigrations({ databaseUrl });
    console.log(applied.length === 0 ? "catalog is up to date" : `applied: ${applied.join(", ")}`);
  } else if (command === "create" && name) {
    const dir = await createMigration({ databaseUrl, name });
    console.log(dir ? `created ${dir}` : "schema.prisma has no changes; no migration created");
  } else {
    console.error("usage: migrate | create <lower_snake_case_name>");
    process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err instanceof BulwarkError ? `${err.code}: ${err.message}` : err);
  process.exitCode = 1;
});
