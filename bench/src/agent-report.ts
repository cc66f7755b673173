/**
 * Pure helpers for the agent → gRPC → server adapter: what the agent's `backup --json` report says
 * it sent, and the server's peak RSS from /proc/<pid>/status.
 */

/** `counters.bytesSent` of the agent's `backup --json` report (the last JSON document on stdout). */
export function agentBytesSent(stdout: string): number {
  const report = lastJsonDocument(stdout) as { counters?: { bytesSent?: unknown } } | undefined;
  const sent = report?.counters?.bytesSent;
  if (typeof sent !== "number" || !Number.isFinite(sent) || sent < 0)
    throw new Error("the agent's --json report lacks counters.bytesSent");
  return sent;
}

/** The restore point the agent's `backup --json` report names. */
export function agentRestorePointId(stdout: string): string | undefined {
  const report = lastJsonDocument(stdout) as { restorePointId?: unknown } | undefined;
  return typeof report?.restorePointId === "string" ? report.restorePointId : undefined;
}

/**
 * The agent prints one pretty-printed JSON document; progress goes to stderr. Tolerates lines
 * before it by trying every `{` at the start of a line, last first.
 */
export function lastJsonDocument(stdout: string): unknown {
  const text = stdout.trim();
  const starts: number[] = [];
  for (let i = 0; i < text.length; i++)
    if (text[i] === "{" && (i === 0 || text[i - 1] === "\n")) starts.push(i);
  for (const start of starts) {
    try {
      return JSON.parse(text.slice(start));
    } catch {
      // not a whole document from here; try a later start
    }
  }
  return undefined;
}

/**
 * Peak resident set size ("VmHWM:   123456 kB") from the text of /proc/<pid>/status, in bytes.
 * Throws when the line is missing (a kernel thread, or not Linux) so a 0 can never be reported.
 */
export function parseVmHwm(status: string): number {
  const m = /^VmHWM:\s+(\d+)\s+kB\s*$/m.exec(status);
  if (!m) throw new Error("/proc/<pid>/status has no VmHWM line");
  return Number(m[1]) * 1024;
}
