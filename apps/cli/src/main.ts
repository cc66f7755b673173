#!/usr/bin/env node
import { run } from "./run.js";
import { promptLine, promptSecret, readAllStdin } from "./terminal.js";

// `bulwark jobs ls | head` closes the pipe early: that is the reader's choice, not a failure.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const interactive = process.stdin.isTTY === true && process.stderr.isTTY === true;
const code = await run(process.argv.slice(2), {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
  env: process.env,
  readStdin: readAllStdin,
  ...(interactive ? { promptSecret, promptLine } : {}),
  // Progress redrawn in place only on a terminal; pipes and files get a line per change.
  ...(process.stdout.isTTY
    ? { rewriteLine: (text: string) => process.stdout.write(text === "\n" ? text : `\r\x1b[2K${text}`) }
    : {}),
});
process.exitCode = code;
