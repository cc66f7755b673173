import type { Prisma } from "@bulwark/catalog";
import { collectGarbage, verifyRepository } from "@bulwark/repository";
import type { Job as BullJob } from "bullmq";
import type { JobContext } from "./context.js";
import { errorFields, TERMINAL_STATES } from "./mirror.js";

// GC and verify of one repository, on their own schedules (config gcCron / verifyCron). The
// repository library does the work (GC keeps chunks younger than its grace period and those of
// open sessions; verify checks every index and chunk reference); the report is the Job's result,
// which the console shows. One at a time per repository is enough: their queues' concurrency is 1.

export async function processMaintenance(
  ctx: JobContext,
  kind: "GC" | "VERIFY",
  job: BullJob<{ jobId: string }>,
): Promise<unknown> {
  const row = await ctx.catalog.job.findUnique({ where: { id: job.data.jobId } });
  if (!row || TERMINAL_STATES.includes(row.state)) return row?.state ?? "GONE";
  const now = ctx.now();
  await ctx.catalog.job.update({
    where: { id: row.id },
    data: { state: "RUNNING", attempts: { increment: 1 }, startedAt: row.startedAt ?? now },
  });
  const { repositoryId } = row.params as { repositoryId: string };
  try {
    const { repo } = await ctx.repositories.get(repositoryId);
    const report = kind === "GC" ? await collectGarbage(repo) : await verifyRepository(repo);
    const problems = kind === "VERIFY" && !(report as { ok: boolean }).ok;
    await ctx.catalog.job.update({
      where: { id: row.id },
      data: {
        state: problems ? "FAILED" : "SUCCEEDED",
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
    });
    return report;
  } catch (err) {
    await ctx.catalog.job.update({
      where: { id: row.id },
      data: { state: "FAILED", finishedAt: ctx.now(), ...errorFields(err) },
    });
    throw err;
  }
}
