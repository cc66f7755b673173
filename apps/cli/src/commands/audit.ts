// audit ls: the append-only audit log (admins and auditors).

import { auditEventSchema } from "@bulwark/api";
import { defineCommand } from "../command.js";
import { formatTime, table } from "../format.js";
import { parseSince } from "../values.js";
import { API, enumValue, fetchList, listOptions, moreHint } from "./common.js";

export const auditLsCommand = defineCommand({
  path: ["audit", "ls"],
  summary: "list audit events, newest first",
  args: [],
  options: {
    action: { type: "string", description: 'an action (auth.login) or a prefix ending in "." (auth.)' },
    since: { type: "string", valueName: "when", description: "at or after: 24h, 7d or an ISO time" },
    until: { type: "string", valueName: "when", description: "before: 24h, 7d or an ISO time" },
    actor: { type: "string", valueName: "id", description: "the acting user, token or agent ID" },
    "target-type": { type: "string", valueName: "type", description: "e.g. policy, agent, backup" },
    target: { type: "string", valueName: "id", description: "the target's ID" },
    outcome: { type: "string", valueName: "success|failure|denied", description: "only this outcome" },
    ...listOptions,
  },
  examples: ["bulwark audit ls --action auth. --since 24h", "bulwark audit ls --outcome denied --json"],
  async run(ctx, { options }) {
    const now = ctx.now();
    const page = await fetchList(
      ctx.api(),
      `${API}/audit-events`,
      auditEventSchema,
      {
        action: options.action,
        actorId: options.actor,
        targetType: options["target-type"],
        targetId: options.target,
        outcome: enumValue("--outcome", options.outcome, ["SUCCESS", "FAILURE", "DENIED"] as const, true),
        from:
          options.since === undefined ? undefined : parseSince(options.since, "--since", now).toISOString(),
        to: options.until === undefined ? undefined : parseSince(options.until, "--until", now).toISOString(),
      },
      options,
    );
    const text = table(
      [
        { header: "AT", value: (e) => formatTime(e.at, now) },
        { header: "ACTION", value: (e) => e.action },
        { header: "OUTCOME", value: (e) => e.outcome },
        { header: "ACTOR", value: (e) => `${e.actorType.toLowerCase()} ${e.actorName ?? e.actorId ?? "-"}` },
        {
          header: "TARGET",
          value: (e) => (e.targetType ? `${e.targetType} ${e.targetId ?? ""}`.trim() : "-"),
        },
        { header: "IP", value: (e) => e.ip ?? "-" },
      ],
      page.items,
    );
    return { data: page, text: text + moreHint(page) };
  },
});
