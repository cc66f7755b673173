import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { JobResult } from "@bulwark/protocol";

// Finished jobs, on disk under <stateDir>/control/jobs/: the last attempt's JobResult (with its
// attempt) until it is delivered (resent after every reconnect until then), and afterwards a record
// that the job ran, so a command repeated after a restart of the agent is acknowledged and not run
// twice, while a later attempt of a job whose record is FAILED runs again (daemon.ts, isRepeat).

/** Delivered records are kept this long for dedupe; the server stops resending a command long before. */
export const DELIVERED_RECORD_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;

export interface JobRecord {
  jobId: string;
  result: JobResult;
  delivered: boolean;
  finishedAt: string;
}

/** Job IDs come from the server; only these characters reach a file name. */
function fileName(jobId: string): string {
  return `${Buffer.from(jobId).toString("base64url")}.json`;
}

export class JobRecords {
  private readonly dir: string;
  private readonly records = new Map<string, JobRecord>();

  constructor(stateDir: string) {
    this.dir = join(stateDir, "control", "jobs");
  }

  /** Reads what a previous run left and drops delivered records past retention. */
  async load(now: Date): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith(".json")) continue;
      const path = join(this.dir, name);
      try {
        const raw = JSON.parse(await readFile(path, "utf8")) as {
          jobId: string;
          result: string;
          delivered: boolean;
          finishedAt: string;
        };
        const record: JobRecord = {
          jobId: raw.jobId,
          result: JobResult.decode(Buffer.from(raw.result, "base64")),
          delivered: raw.delivered,
          finishedAt: raw.finishedAt,
        };
        if (
          record.delivered &&
          now.getTime() - Date.parse(record.finishedAt) > DELIVERED_RECORD_RETENTION_MS
        ) {
          await rm(path, { force: true });
          continue;
        }
        this.records.set(record.jobId, record);
      } catch {
        // A torn write (crash mid-save) is not worth keeping the daemon down for.
        await rm(path, { force: true });
      }
    }
  }

  get(jobId: string): JobRecord | undefined {
    return this.records.get(jobId);
  }

  undelivered(): JobRecord[] {
    return [...this.records.values()].filter((r) => !r.delivered);
  }

  async finish(result: JobResult, now: Date): Promise<JobRecord> {
    const record: JobRecord = {
      jobId: result.jobId,
      result,
      delivered: false,
      finishedAt: now.toISOString(),
    };
    this.records.set(result.jobId, record);
    await this.save(record);
    return record;
  }

  async markDelivered(jobId: string): Promise<void> {
    const record = this.records.get(jobId);
    if (!record || record.delivered) return;
    record.delivered = true;
    await this.save(record);
  }

  private async save(record: JobRecord): Promise<void> {
    const path = join(this.dir, fileName(record.jobId));
    const tmp = `${path}.tmp`;
    await writeFile(
      tmp,
      JSON.stringify({
        jobId: record.jobId,
        result: Buffer.from(JobResult.encode(record.result).finish()).toString("base64"),
        delivered: record.delivered,
        finishedAt: record.finishedAt,
      }),
      { mode: 0o600 },
    );
    await rename(tmp, path);
  }
}
