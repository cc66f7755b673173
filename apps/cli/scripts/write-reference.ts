// Rewrites the command reference at the end of docs/cli.md from the command declarations.
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { COMMANDS } from "../src/commands/index.js";
import { withReference } from "../src/reference.js";

const path = fileURLToPath(new URL("../../../docs/cli.md", import.meta.url));
writeFileSync(path, withReference(readFileSync(path, "utf8"), COMMANDS));
