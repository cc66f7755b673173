// Every command the CLI has, in the order `bulwark --help` and docs/cli.md list them.
import type { CommandSpec } from "../command.js";
import { agentsLsCommand, agentsRevokeCommand, agentsShowCommand } from "./agents.js";
import { auditLsCommand } from "./audit.js";
import { loginCommand, logoutCommand, whoamiCommand } from "./auth.js";
import { backupsLsCommand, backupsRmCommand, backupsShowCommand } from "./backups.js";
import { filesFindCommand, filesGetCommand, filesLsCommand, filesVolumeCommand } from "./files.js";
import {
  groupsAddCommand,
  groupsCreateCommand,
  groupsLsCommand,
  groupsRemoveCommand,
  groupsRmCommand,
} from "./groups.js";
import {
  jobsCancelCommand,
  jobsLogCommand,
  jobsLsCommand,
  jobsRetryCommand,
  jobsRunBackupCommand,
  jobsShowCommand,
  jobsWatchCommand,
} from "./jobs.js";
import {
  policiesAssignCommand,
  policiesCreateCommand,
  policiesEditCommand,
  policiesLsCommand,
  policiesRmCommand,
  policiesShowCommand,
  policiesUnassignCommand,
} from "./policies.js";
import { repoStatusCommand } from "./repo.js";
import {
  exportsCloseCommand,
  exportsLsCommand,
  restoreExportCommand,
  restoreNbdCommand,
  restoreVolumeCommand,
} from "./restore.js";
import { statusCommand } from "./status.js";
import {
  apiCreateCommand,
  apiLsCommand,
  apiRevokeCommand,
  enrollCreateCommand,
  enrollLsCommand,
  enrollRevokeCommand,
} from "./tokens.js";
import {
  usersCreateCommand,
  usersDisableCommand,
  usersEnableCommand,
  usersLsCommand,
  usersRoleCommand,
} from "./users.js";
import {
  webhooksCreateCommand,
  webhooksDeliveriesCommand,
  webhooksLsCommand,
  webhooksRmCommand,
  webhooksTestCommand,
} from "./webhooks.js";

export const COMMANDS: readonly CommandSpec[] = [
  loginCommand,
  logoutCommand,
  whoamiCommand,
  statusCommand,
  agentsLsCommand,
  agentsShowCommand,
  agentsRevokeCommand,
  groupsLsCommand,
  groupsCreateCommand,
  groupsRmCommand,
  groupsAddCommand,
  groupsRemoveCommand,
  policiesLsCommand,
  policiesShowCommand,
  policiesCreateCommand,
  policiesEditCommand,
  policiesRmCommand,
  policiesAssignCommand,
  policiesUnassignCommand,
  backupsLsCommand,
  backupsShowCommand,
  backupsRmCommand,
  jobsLsCommand,
  jobsShowCommand,
  jobsWatchCommand,
  jobsRunBackupCommand,
  jobsCancelCommand,
  jobsRetryCommand,
  jobsLogCommand,
  restoreVolumeCommand,
  restoreNbdCommand,
  restoreExportCommand,
  exportsLsCommand,
  exportsCloseCommand,
  filesVolumeCommand,
  filesLsCommand,
  filesFindCommand,
  filesGetCommand,
  enrollCreateCommand,
  enrollLsCommand,
  enrollRevokeCommand,
  apiCreateCommand,
  apiLsCommand,
  apiRevokeCommand,
  usersLsCommand,
  usersCreateCommand,
  usersDisableCommand,
  usersEnableCommand,
  usersRoleCommand,
  auditLsCommand,
  repoStatusCommand,
  webhooksLsCommand,
  webhooksCreateCommand,
  webhooksRmCommand,
  webhooksTestCommand,
  webhooksDeliveriesCommand,
];
