-- FILE_RESTORE and EXPORT jobs were never created: file downloads and NBD exports are audited
-- actions, not jobs. A row of either kind (made by hand) stops the migration with its count
-- rather than failing the cast below with a bare "invalid input value for enum".
DO $$
DECLARE
  n bigint;
BEGIN
  SELECT count(*) INTO n FROM "jobs" WHERE "kind"::text IN ('FILE_RESTORE', 'EXPORT');
  IF n > 0 THEN
    RAISE EXCEPTION 'jobs has % row(s) of kind FILE_RESTORE or EXPORT, which Bulwark no longer has; delete them (or change their kind), delete this migration''s unfinished row from _prisma_migrations (nothing was changed), and migrate again', n
      USING ERRCODE = 'check_violation';
  END IF;
END
$$;

-- AlterEnum
BEGIN;
CREATE TYPE "JobKind_new" AS ENUM ('BACKUP', 'RESTORE', 'VERIFY', 'PRUNE', 'GC');
ALTER TABLE "jobs" ALTER COLUMN "kind" TYPE "JobKind_new" USING ("kind"::text::"JobKind_new");
ALTER TYPE "JobKind" RENAME TO "JobKind_old";
ALTER TYPE "JobKind_new" RENAME TO "JobKind";
DROP TYPE "public"."JobKind_old";
COMMIT;
