-- AlterTable
ALTER TABLE "backup_sessions" ADD COLUMN     "newBytes" BIGINT NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "backups" ADD COLUMN     "indexDigest" BYTEA;
