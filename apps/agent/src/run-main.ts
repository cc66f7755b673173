// How a bulwark-agent process ends. It imports node: modules only, so cli.ts can load it before the
// young-generation cap (see cli.ts).

/**
 * Runs a command's `main` and ends the process with its exit code, or 1 with `describeError`'s
 * line on stderr. Two ways a run could otherwise end as a false success are closed:
 * - process.exit() drops what a pipe has not yet taken (pipes are written asynchronously on
 *   POSIX), so a --json report over 64 KiB, or behind a reader that stopped for a moment, would
 *   arrive cut short: the exit waits until stdout and stderr have handed everything to the OS.
 * - Should the event loop run dry while `main` still waits (every socket, timer and worker idle,
 *   so nothing can ever wake it), Node would exit 0 with nothing printed: the run fails instead,
 *   with BULWARK_AGENT_STALLED.
 * The process is ended explicitly, not left to drain, since a gRPC channel or a worker may still
 * be closing when `main` returns.
 */
export function runMain(main: () => Promise<number>, describeError: (err: unknown) => string): void {
  let settled = false;
  process.on("beforeExit", () => {
    if (settled) return;
    settled = true;
    process.stderr.write(
      "BULWARK_AGENT_STALLED: the command was left waiting with nothing that could wake it (a bug), so it stops here unfinished; run it again (a backup resumes its session)\n",
    );
    exitWhenWritten(1);
  });
  main().then(
    (code) => {
      settled = true;
      exitWhenWritten(code);
    },
    (err: unknown) => {
      settled = true;
      process.stderr.write(`${describeError(err)}\n`);
      exitWhenWritten(1);
    },
  );
}

/** Exits once stdout and stderr have taken everything written before (writes complete in order). */
function exitWhenWritten(code: number): void {
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write("", done);
  process.stderr.write("", done);
}
