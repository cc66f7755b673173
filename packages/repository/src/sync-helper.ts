import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { BulwarkError } from "@bulwark/errors";

/**
 * syncfs(2) for Node, which has no binding: coreutils `sync -f DIR`, run by one long-lived shell.
 *
 * Why a helper instead of spawning `sync` per barrier: spawning from Node forks the whole process
 * (libuv uses fork, not vfork), which marks every page copy-on-write; the worker threads then take
 * a page fault on each page they write next. Measured here: 14 spawns beside 100 MiB of live
 * buffers cost 390 000 page faults and 8 CPU seconds (0.7 s without them); in a 1 GiB ingest they
 * were most of its system time. The shell is started once, while the process is still small
 * (LocalBackend's constructor), and forks only itself (a few MiB) for each `sync`: one fork and
 * exec per barrier. (An earlier script captured sync's stderr with `$(...)` and cut it with
 * `printf | head`: four forks and two execs per barrier, 25 ms of CPU each against 6 ms now,
 * measured over 200 barriers here; a 1 GiB `put` runs about 18 barriers, a 3 GiB one about 55.)
 *
 * One request at a time; a request resolves "ok", "unavailable" (no shell, or `sync` without -f)
 * or rejects with BULWARK_REPO_IO / _NO_SPACE when the flush itself failed.
 */
type Result = "ok" | "unavailable";

/**
 * Reads one directory per line; answers with sync's stderr lines (its error message, if any), then
 * a line of END, a space and sync's exit status. Only `sync` is forked: the redirections and
 * `printf` are the shell's own.
 */
const END = "\u0001";
const SCRIPT = `while IFS= read -r d; do sync -f -- "$d" 2>&1 >/dev/null; printf '\\001 %s\\n' "$?"; done`;

class SyncHelper {
  private child: ChildProcessWithoutNullStreams | null = null;
  private dead = false;
  private readonly waiting: { dir: string; resolve: (r: Result) => void; reject: (e: Error) => void }[] = [];
  private queue: Promise<unknown> = Promise.resolve();

  /** Starts the shell now (cheap while the process is small); harmless to call again. */
  start(): void {
    if (this.child || this.dead) return;
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn("sh", ["-c", SCRIPT], { stdio: ["pipe", "pipe", "pipe"] });
    } catch {
      this.dead = true;
      return;
    }
    this.child = child;
    child.on("error", () => this.fail());
    child.on("exit", () => this.fail());
    child.stdin.on("error", () => this.fail());
    createInterface({ input: child.stdout }).on("line", (line) => this.answer(line));
    child.stderr.resume();
    this.idle();
  }

  /** The helper must never keep the process alive while nothing is being flushed. */
  private idle(): void {
    const c = this.child;
    if (!c) return;
    c.unref();
    (c.stdin as unknown as { unref?: () => void }).unref?.();
    (c.stdout as unknown as { unref?: () => void }).unref?.();
    (c.stderr as unknown as { unref?: () => void }).unref?.();
  }

  private busy(): void {
    const c = this.child;
    if (!c) return;
    c.ref();
    (c.stdout as unknown as { ref?: () => void }).ref?.();
  }

  private fail(): void {
    this.dead = true;
    this.child = null;
    this.message = [];
    for (const w of this.waiting.splice(0)) w.resolve("unavailable");
  }

  /** sync's stderr lines for the request being answered; the first one is its error message. */
  private message: string[] = [];

  private answer(line: string): void {
    if (!line.startsWith(`${END} `)) {
      this.message.push(line);
      return;
    }
    const status = Number(line.slice(END.length + 1));
    const message = this.message[0] ?? "";
    this.message = [];
    const w = this.waiting.shift();
    if (this.waiting.length === 0) this.idle();
    if (!w) return;
    if (status === 0) w.resolve("ok");
    else if (status === 127 || /invalid option|unrecognized option|usage/i.test(message)) {
      w.resolve("unavailable");
    } else
      w.reject(
        new BulwarkError(
          /no space/i.test(message) ? "BULWARK_REPO_NO_SPACE" : "BULWARK_REPO_IO",
          `sync -f ${w.dir}: ${message || `exit status ${status}`}`,
        ),
      );
  }

  /** Flushes the filesystem holding dir. One flush at a time, in call order. */
  syncfs(dir: string): Promise<Result> {
    const run = () =>
      new Promise<Result>((resolve, reject) => {
        this.start();
        const c = this.child;
        if (!c || this.dead || /[\n\r]/.test(dir)) return resolve("unavailable");
        this.waiting.push({ dir, resolve, reject });
        this.busy();
        c.stdin.write(`${dir}\n`);
      });
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }
}

export const syncHelper = new SyncHelper();
