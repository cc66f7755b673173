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
 * (LocalBackend's constructor), and forks only itself (a few MiB) for each `sync`.
 *
 * One request at a time; a request resolves "ok", "unavailable" (no shell, or `sync` without -f)
 * or rejects with BULWARK_REPO_IO / _NO_SPACE when the flush itself failed.
 */
type Result = "ok" | "unavailable";

// Reads one directory per line; answers "<exit status> <first line of sync's stderr>".
const SCRIPT =
  'while IFS= read -r d; do e=$(sync -f -- "$d" 2>&1 >/dev/null); s=$?; ' +
  'printf "%s %s\\n" "$s" "$(printf "%s" "$e" | head -n 1)"; done';

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
    for (const w of this.waiting.splice(0)) w.resolve("unavailable");
  }

  private answer(line: string): void {
    const w = this.waiting.shift();
    if (this.waiting.length === 0) this.idle();
    if (!w) return;
    const space = line.indexOf(" ");
    const status = Number(line.slice(0, space));
    const message = line.slice(space + 1);
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
