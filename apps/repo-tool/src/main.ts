#!/usr/bin/env node
import { run } from "./cli.js";

// Long-running commands (`nbd`) end cleanly on Ctrl-C or a service manager's SIGTERM.
const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: stop.signal,
});
