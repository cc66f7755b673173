-- CreateTable
CREATE TABLE "export_pins" (
    "id" UUID NOT NULL,
    "backupId" UUID NOT NULL,
    "node" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expiresAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "export_pins_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "export_pins_backupId_expiresAt_idx" ON "export_pins"("backupId", "expiresAt");

-- AddForeignKey
ALTER TABLE "export_pins" ADD CONSTRAINT "export_pins_backupId_fkey" FOREIGN KEY ("backupId") REFERENCES "backups"("id") ON DELETE CASCADE ON UPDATE CASCADE;
