import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";

// Where an interrupted restore continues after the agent process itself died (the daemon was
// restarted, the live system rebooted): <stateDir>/restore/<jobId>.json holds the first chunk not
// yet durably written, for that job and that target only. Written atomically after each fsync;
// removed when the restore ends. A file for another target is ignored (never trusted).

const RESUME_VERSION = 1;

const resumeSchema = z.object({
  version: z.literal(RESUME_VERSION),
  jobId: z.string(),
  target: z.string(),
  resumeFromIndex: z.number().int().nonnegative(),
});

export class RestoreResumeFile {
  private readonly path: string;

  constructor(
    stateDir: string,
    private readonly jobId: string,
    private readonly target: string,
  ) {
    // Job IDs are UUIDs; anything else is hashed out of the way of path tricks.
    const name = /^[0-9a-zA-Z-]{1,64}$/.test(jobId) ? jobId : Buffer.from(jobId).toString("hex").slice(0, 64);
    this.path = join(stateDir, "restore", `${name}.json`);
  }

  /** The saved resume index for this job and target, or 0. */
  async load(): Promise<number> {
    try {
      const saved = resumeSchema.parse(JSON.parse(await readFile(this.path, "utf8")));
      return saved.jobId === this.jobId && saved.target === this.target ? saved.resumeFromIndex : 0;
    } catch {
      return 0;
    }
  }

  async save(resumeFromIndex: number): Promise<void> {
    await mkdir(join(this.path, ".."), { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.tmp`;
    const body = { version: RESUME_VERSION, jobId: this.jobId, target: this.target, resumeFromIndex };
    await writeFile(tmp, `${JSON.stringify(body)}\n`, { mode: 0o600 });
    await rename(tmp, this.path);
  }

  async remove(): Promise<void> {
    await rm(this.path, { force: true });
  }
}
