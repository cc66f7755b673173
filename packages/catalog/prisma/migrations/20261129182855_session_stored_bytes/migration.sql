-- AlterTable
ALTER TABLE "backup_sessions" ADD COLUMN     "storedBytes" BIGINT NOT NULL DEFAULT 0;
