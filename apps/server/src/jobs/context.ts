import type { Catalog } from "@bulwark/catalog";
import type { Logger } from "pino";
import type { AgentCommandDispatcher } from "../control/contracts.js";
import type { RepositoryRegistry } from "../repositories/registry.js";
import type { JobQueues } from "./queues.js";
import type { JobSettings } from "./settings.js";
import type { RepositorySlots } from "./slots.js";
import type { JobWakeups } from "./wakeups.js";

/** Everything the job system's parts share on one node. */
export interface JobContext {
  catalog: Catalog;
  queues: JobQueues;
  dispatcher: AgentCommandDispatcher;
  repositories: RepositoryRegistry;
  wakeups: JobWakeups;
  slots: RepositorySlots;
  settings: JobSettings;
  log: Logger;
  now: () => Date;
}
