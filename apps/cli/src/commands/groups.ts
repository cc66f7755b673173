// groups ls | create | rm | add | remove: named sets of machines that policies are assigned to.

import { groupSchema } from "@bulwark/api";
import { defineCommand } from "../command.js";
import { table } from "../format.js";
import {
  API,
  fetchList,
  listOptions,
  moreHint,
  noContent,
  resolveAgentId,
  resolveGroupId,
} from "./common.js";

export const groupsLsCommand = defineCommand({
  path: ["groups", "ls"],
  summary: "list groups with their member counts",
  args: [],
  options: {
    search: { type: "string", valueName: "text", description: "name contains this text" },
    ...listOptions,
  },
  examples: ["bulwark groups ls"],
  async run(ctx, { options }) {
    const page = await fetchList(
      ctx.api(),
      `${API}/groups`,
      groupSchema,
      { search: options.search },
      options,
    );
    const text = table(
      [
        { header: "ID", value: (g) => g.id },
        { header: "NAME", value: (g) => g.name },
        { header: "MEMBERS", value: (g) => String(g.memberCount), align: "right" },
        { header: "DESCRIPTION", value: (g) => g.description ?? "" },
      ],
      page.items,
    );
    return { data: page, text: text + moreHint(page) };
  },
});

export const groupsCreateCommand = defineCommand({
  path: ["groups", "create"],
  summary: "create a group",
  args: ["name"],
  options: { description: { type: "string", valueName: "text", description: "what the group is for" } },
  examples: ['bulwark groups create web --description "public web servers"'],
  async run(ctx, { args, options }) {
    const g = await ctx.api().post(
      `${API}/groups`,
      {
        name: args.name,
        ...(options.description !== undefined ? { description: options.description } : {}),
      },
      groupSchema,
    );
    return { data: g, text: `created group ${g.name} (${g.id})` };
  },
});

export const groupsRmCommand = defineCommand({
  path: ["groups", "rm"],
  summary: "delete a group (its machines stay; its policy assignments go)",
  args: ["group"],
  options: {},
  examples: ["bulwark groups rm web"],
  async run(ctx, { args }) {
    const api = ctx.api();
    const id = await resolveGroupId(api, args.group);
    await api.delete(`${API}/groups/${id}`, noContent);
    return { data: { id, deleted: true }, text: `deleted group ${args.group} (${id})` };
  },
});

export const groupsAddCommand = defineCommand({
  path: ["groups", "add"],
  summary: "add machines to a group",
  args: ["group", "agents..."],
  options: {},
  examples: ["bulwark groups add web web-01 web-02"],
  async run(ctx, { args }) {
    const api = ctx.api();
    const groupId = await resolveGroupId(api, args.group);
    const added: string[] = [];
    for (const agent of args.agents) {
      const agentId = await resolveAgentId(api, agent);
      await api.put(`${API}/groups/${groupId}/members/${agentId}`, undefined, noContent);
      added.push(agentId);
    }
    return {
      data: { groupId, added },
      text: `added ${args.agents.join(", ")} to ${args.group}`,
    };
  },
});

export const groupsRemoveCommand = defineCommand({
  path: ["groups", "remove"],
  summary: "remove machines from a group",
  args: ["group", "agents..."],
  options: {},
  examples: ["bulwark groups remove web web-02"],
  async run(ctx, { args }) {
    const api = ctx.api();
    const groupId = await resolveGroupId(api, args.group);
    const removed: string[] = [];
    for (const agent of args.agents) {
      const agentId = await resolveAgentId(api, agent);
      await api.delete(`${API}/groups/${groupId}/members/${agentId}`, noContent);
      removed.push(agentId);
    }
    return {
      data: { groupId, removed },
      text: `removed ${args.agents.join(", ")} from ${args.group}`,
    };
  },
});
