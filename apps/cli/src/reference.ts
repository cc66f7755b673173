// The "## Commands" section of docs/cli.md, generated from the command declarations so that the
// reference cannot drift from the code: `pnpm --filter @bulwark/cli run docs` rewrites it and a test
// fails when the file differs from what this produces.

import type { CommandSpec } from "./command.js";
import { synopsis } from "./parse-argv.js";

export const REFERENCE_HEADING = "## Commands";

const LIST_OPTIONS = ["limit", "cursor", "all"];

export function commandReference(commands: readonly CommandSpec[]): string {
  const out: string[] = [REFERENCE_HEADING, ""];
  let group = "";
  for (const c of commands) {
    if (c.path[0] !== group) {
      group = c.path[0]!;
      out.push(`### ${group}`, "");
    }
    out.push(
      `#### \`bulwark ${c.path.join(" ")}\``,
      "",
      `${c.summary.charAt(0).toUpperCase()}${c.summary.slice(1)}.`,
      "",
    );
    out.push("```", synopsis(c), "```", "");
    const paged = LIST_OPTIONS.every((n) => n in c.options);
    const options = Object.entries(c.options).filter(([n]) => !paged || !LIST_OPTIONS.includes(n));
    if (options.length > 0) {
      out.push("| option | meaning |", "| --- | --- |");
      for (const [name, spec] of options) {
        const value = spec.type === "string" ? ` <${spec.valueName ?? name}>` : "";
        const text = `${spec.description}${spec.multiple ? " (repeatable)" : ""}`;
        out.push(`| ${cell(`\`--${name}${value}\``)} | ${cell(text)} |`);
      }
      out.push("");
    }
    if (paged) out.push("Takes the [list options](#lists-and-paging) `--limit`, `--cursor` and `--all`.", "");
    if (c.examples?.length) out.push("```sh", ...c.examples, "```", "");
  }
  return out.join("\n");
}

/** A table cell: GFM splits rows at every unescaped `|`, even inside a code span (`<raw|qcow2>`). */
function cell(text: string): string {
  return text.replace(/\|/g, "\\|");
}

/** Replaces everything from the Commands heading to the end of the document. */
export function withReference(doc: string, commands: readonly CommandSpec[]): string {
  const at = doc.indexOf(`\n${REFERENCE_HEADING}\n`);
  const head = at === -1 ? `${doc.trimEnd()}\n` : doc.slice(0, at + 1);
  return `${head}${commandReference(commands)}`;
}
