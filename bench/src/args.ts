import { parseArgs } from "node:util";

export interface BenchOptions {
  size: number;
  fill: number;
  writes: number;
  runs: number;
  seed: string;
  tools: string[];
  workDir: string;
  docs: string | undefined;
  json: string | undefined;
  build: boolean;
  keep: boolean;
  /** Postgres URL allowed to create databases: bulwark-agent's per-run catalog is made there. */
  databaseUrl: string;
  /** `--streams N` for bulwark-agent; undefined keeps the agent's default. */
  agentStreams: number | undefined;
  /** Share of the restored target's 4 KiB blocks the delta restore has to repair (bulwark-agent). */
  deltaChange: number;
}

export const DEFAULT_ADMIN_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres";

export const DEFAULT_SIZE = 2 * 1024 ** 3;
export const QUICK_SIZE = 256 * 1024 ** 2;
// Also the order each scenario runs the tools in: the baseline first, the subject last.
export const ALL_TOOLS = ["restic", "borg", "bulwark", "bulwark-agent"];

export const USAGE = `usage: pnpm bench [options]

Builds a seeded ext4 image and, in one run, compares bulwark-repo and the agent → gRPC (mTLS) →
bulwark-server path with restic and borg on it: full ingest, incremental after scattered 4 KiB
writes, restore (hash-checked); for bulwark-agent also a delta restore and a single-file download
(issue 6; its time-to-first-byte target counts from a 3 GB image: --size 3G). Ratios are against
restic. Writes the results to docs/benchmarks.md.

  --size SIZE        image size, e.g. 2G, 512M, 1073741824 (default 2G)
  --quick            a 256M image (unless --size is given): a smoke run in well under a minute
  --fill FRACTION    share of the image filled with files (default 0.6)
  --writes N         scattered 4 KiB writes before the incremental (default 1000)
  --runs N           repeat the scenarios N times on fresh repositories; report medians (default 1)
  --seed S           seed for the image and the writes (default 1)
  --tools LIST       comma-separated subset of ${ALL_TOOLS.join(",")} (restic is the baseline, always included)
  --work-dir DIR     where the image and repositories go (default bench/work; deleted afterwards)
  --docs FILE        markdown file to update (default docs/benchmarks.md)
  --no-docs          do not touch the docs
  --json FILE        also write the raw results as JSON
  --database-url URL Postgres where bulwark-agent creates (and drops) its per-run catalog database
                     (default ${DEFAULT_ADMIN_DATABASE_URL})
  --agent-streams N  pass --streams N to bulwark-agent (default: the agent's own default)
  --delta-change F   share of the restored target's 4 KiB blocks overwritten before bulwark-agent's
                     delta restore (default 0.01 = 1%)
  --no-build         use the already built Bulwark tools instead of building them first
  --keep             keep the work directory (image, repositories) for inspection
  --help`;

/** 2G, 2GiB, 512M, 64k, or plain bytes; binary units. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new Error(`not a size: ${text} (try 2G, 512M or a number of bytes)`);
  const power = ["", "k", "m", "g", "t"].indexOf(m[2]!.toLowerCase());
  const bytes = Math.round(Number(m[1]) * 1024 ** power);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`size out of range: ${text}`);
  return bytes;
}

export function parseBenchArgs(
  argv: string[],
  defaults: { workDir: string; docs: string },
): BenchOptions | "help" {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      size: { type: "string" },
      quick: { type: "boolean", default: false },
      fill: { type: "string", default: "0.6" },
      writes: { type: "string", default: "1000" },
      runs: { type: "string", default: "1" },
      seed: { type: "string", default: "1" },
      tools: { type: "string", default: ALL_TOOLS.join(",") },
      "work-dir": { type: "string", default: defaults.workDir },
      docs: { type: "string", default: defaults.docs },
      "no-docs": { type: "boolean", default: false },
      json: { type: "string" },
      "no-build": { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      "database-url": { type: "string", default: DEFAULT_ADMIN_DATABASE_URL },
      "agent-streams": { type: "string" },
      "delta-change": { type: "string", default: "0.01" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return "help";
  const size = values.size ? parseSize(values.size) : values.quick ? QUICK_SIZE : DEFAULT_SIZE;
  if (size < 32 * 1024 ** 2) throw new Error("--size must be at least 32M (ext4 needs room for its journal)");
  const fill = Number(values.fill);
  if (!(fill > 0 && fill <= 0.85))
    throw new Error("--fill must be in (0, 0.85]: ext4 metadata needs the rest");
  const writes = Number(values.writes);
  if (!Number.isSafeInteger(writes) || writes < 1) throw new Error("--writes must be a positive integer");
  const runs = Number(values.runs);
  if (!Number.isSafeInteger(runs) || runs < 1 || runs > 25)
    throw new Error("--runs must be an integer from 1 to 25");
  const tools = values.tools
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
  for (const t of tools)
    if (!ALL_TOOLS.includes(t)) throw new Error(`unknown tool ${t}; known: ${ALL_TOOLS.join(", ")}`);
  const agentStreams = values["agent-streams"] === undefined ? undefined : Number(values["agent-streams"]);
  if (
    agentStreams !== undefined &&
    (!Number.isSafeInteger(agentStreams) || agentStreams < 1 || agentStreams > 64)
  )
    throw new Error("--agent-streams must be an integer from 1 to 64");
  const deltaChange = Number(values["delta-change"]);
  if (!(deltaChange > 0 && deltaChange <= 0.5))
    throw new Error("--delta-change must be a fraction in (0, 0.5], e.g. 0.01 for 1%");
  if (!tools.includes("restic")) tools.unshift("restic"); // the baseline every ratio needs
  return {
    size,
    fill,
    writes,
    runs,
    seed: values.seed,
    tools: ALL_TOOLS.filter((t) => tools.includes(t)),
    workDir: values["work-dir"],
    docs: values["no-docs"] ? undefined : values.docs,
    json: values.json,
    build: !values["no-build"],
    keep: values.keep,
    databaseUrl: values["database-url"],
    agentStreams,
    deltaChange,
  };
}
