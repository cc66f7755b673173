import { agentCodes } from "./codes/agent.js";
import { alertCodes } from "./codes/alert.js";
import { apiCodes } from "./codes/api.js";
import { authCodes } from "./codes/auth.js";
import { catalogCodes } from "./codes/catalog.js";
import { cliCodes } from "./codes/cli.js";
import { configCodes } from "./codes/config.js";
import { controlCodes } from "./codes/control.js";
import { enrollCodes } from "./codes/enroll.js";
import { fsCodes } from "./codes/fs.js";
import { generalCodes } from "./codes/general.js";
import { ingestCodes } from "./codes/ingest.js";
import { jobCodes } from "./codes/job.js";
import { nbdCodes } from "./codes/nbd.js";
import { protoCodes } from "./codes/proto.js";
import { queueCodes } from "./codes/queue.js";
import { repoCodes } from "./codes/repo.js";
import { restoreCodes } from "./codes/restore.js";
import { retentionCodes } from "./codes/retention.js";
import type { ErrorSpec } from "./define.js";

// Each area keeps its codes in codes/<area>.ts; add the new area's table here and document it in
// docs/errors.md (a test fails otherwise).
export const errorCatalogue = {
  ...generalCodes,
  ...configCodes,
  ...catalogCodes,
  ...queueCodes,
  ...jobCodes,
  ...retentionCodes,
  ...fsCodes,
  ...agentCodes,
  ...protoCodes,
  ...repoCodes,
  ...cliCodes,
  ...ingestCodes,
  ...enrollCodes,
  ...restoreCodes,
  ...nbdCodes,
  ...controlCodes,
  ...authCodes,
  ...apiCodes,
  ...alertCodes,
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorCatalogue;
