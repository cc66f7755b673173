// Every command the CLI has, in the order `bulwark --help` lists them.
import type { CommandSpec } from "../command.js";
import { statusCommand } from "./status.js";

export const COMMANDS: readonly CommandSpec[] = [statusCommand];
