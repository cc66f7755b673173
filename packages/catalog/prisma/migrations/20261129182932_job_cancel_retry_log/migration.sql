-- CreateEnum
CREATE TYPE "JobLogLevel" AS ENUM ('INFO', 'WARN', 'ERROR');

-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "cancelRequestedAt" TIMESTAMP(3),
ADD COLUMN     "cancelRequestedBy" UUID,
ADD COLUMN     "logSeq" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "retryOfId" UUID;

-- CreateTable
CREATE TABLE "job_log_entries" (
    "jobId" UUID NOT NULL,
    "seq" INTEGER NOT NULL,
    "at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "level" "JobLogLevel" NOT NULL,
    "event" TEXT NOT NULL,
    "code" TEXT,
    "message" TEXT NOT NULL,
    "data" JSONB,

    CONSTRAINT "job_log_entries_pkey" PRIMARY KEY ("jobId","seq")
);

-- CreateIndex
CREATE INDEX "jobs_retryOfId_idx" ON "jobs"("retryOfId");

-- AddForeignKey
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_retryOfId_fkey" FOREIGN KEY ("retryOfId") REFERENCES "jobs"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "job_log_entries" ADD CONSTRAINT "job_log_entries_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "jobs"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Append-only: a log line never changes (rows go only with their job, by the cascade above).
CREATE FUNCTION "job_log_entries_append_only"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'job_log_entries is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER "job_log_entries_no_update" BEFORE UPDATE ON "job_log_entries"
  FOR EACH ROW EXECUTE FUNCTION "job_log_entries_append_only"();
