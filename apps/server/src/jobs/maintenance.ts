import type { Prisma } from "@bulwark/catalog";
import { collectGarbage, verifyRepository } from "@bulwark/repository";
import type { Job as BullJob } from "bullmq";
import { finishStoppedRun, startMaintenanceRun, watchCancel } from "./cancel.js";
import type { JobContext } from "./context.js";
import { errorFields, finishJob, TERMINAL_STATES } from "./mirror.js";

// GC and verify of one repository, on their own schedules (config gcCron / verifyCron). The
// repository library does the work (GC keeps chunks younger than its grace period and those of
// open sessions; verify checks every index and chunk reference); the report is the Job's result,
// which the console shows. One at a time per repository is enough: their queues' concurrency is 1.
// A cancel aborts the run's AbortSignal; the library stops between steps, as after a crash
// (GC's next run settles what this one left, e.g. chunks in trash/).

export async function processMaintenance(
  ctx: JobContext,
  kind: "GC" | "VERIFY",
  job: BullJob<{ jobId: string }>,
): Promise<unknown> {
  const row = await ctx.catalog.job.findUnique({ where: { id: job.data.jobId } });
  if (!row || TERMINAL_STATES.includes(row.state)) return row?.state ?? "GONE";
  if (!(await startMaintenanceRun(ctx, row))) return "CANCELLED";
  const opts = { log: ctx.log };
  const { repositoryId } = row.params as { repositoryId: string };
  const watch = watchCancel(ctx, row.id);
  try {
    const { repo } = await ctx.repositories.get(repositoryId);
    // Opening a repository can take a while: a cancel that came meanwhile stops the run here.
    await watch.recheck();
    watch.signal.throwIfAborted();
    const report =
      kind === "GC"
        ? await collectGarbage(repo, { signal: watch.signal })
        : await verifyRepository(repo, { signal: watch.signal });
    const problems = kind === "VERIFY" && !(report as { ok: boolean }).ok;
    await finishJob(
      ctx.catalog,
      row.id,
      problems ? "FAILED" : "SUCCEEDED",
      {
        finishedAt: ctx.now(),
        progress: 1,
        result: report as unknown as Prisma.InputJsonObject,
        ...(problems
          ? {
              errorCode: "BULWARK_REPO_VERIFY_FAILED",
              errorMessage: "verify found problems; see the job's result",
            }
          : {}),
      },
      opts,
    );
    return report;
  } catch (err) {
    if (watch.signal.aborted) {
      const what = kind === "GC" ? "garbage collection" : "verify";
      await finishStoppedRun(ctx, row.id, `${what} stopped between steps on a cancel request`);
      return "CANCELLED";
    }
    await finishJob(ctx.catalog, row.id, "FAILED", { finishedAt: ctx.now(), ...errorFields(err) }, opts);
    throw err;
  } finally {
    watch.stop();
  }
}
