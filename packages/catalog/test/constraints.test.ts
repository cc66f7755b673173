import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../src/testing.js";

describe("catalog constraints the schema language cannot express", () => {
  let db: TestDatabase;
  let tenantId: string;

  beforeAll(async () => {
    db = await createTestDatabase("constraints");
    tenantId = (await db.catalog.tenant.create({ data: { slug: "t", name: "T" } })).id;
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("keeps the audit log append-only", async () => {
    const event = await db.catalog.auditEvent.create({
      data: { tenantId, actorType: "SYSTEM", action: "test.event", outcome: "SUCCESS" },
    });
    await expect(
      db.catalog.auditEvent.update({ where: { id: event.id }, data: { action: "rewritten" } }),
    ).rejects.toThrow(/append-only/);
    await expect(db.catalog.auditEvent.delete({ where: { id: event.id } })).rejects.toThrow(/append-only/);
    await expect(db.catalog.$executeRawUnsafe('TRUNCATE "audit_events" CASCADE')).rejects.toThrow(
      /append-only/,
    );
    expect(await db.catalog.auditEvent.findUnique({ where: { id: event.id } })).toMatchObject({
      action: "test.event",
    });
  });

  it("requires a policy assignment to target exactly one of a group or an agent", async () => {
    const repo = await db.catalog.repository.create({
      data: { tenantId, name: "main", kind: "LOCAL", location: "/srv/bulwark", repoUuid: "r-1" },
    });
    const policy = await db.catalog.policy.create({
      data: {
        tenantId,
        name: "nightly",
        scheduleCron: "0 2 * * *",
        timezone: "Europe/Berlin",
        retention: { daily: 7 },
        volumeSelector: { kind: "all-fixed" },
        repositoryId: repo.id,
      },
    });
    const group = await db.catalog.group.create({ data: { tenantId, name: "laptops" } });
    const agent = await db.catalog.agent.create({
      data: { tenantId, machineId: "m-1", hostname: "pc-1", os: "linux", agentVersion: "0.1.0" },
    });
    await expect(db.catalog.policyAssignment.create({ data: { policyId: policy.id } })).rejects.toThrow(
      /policy_assignments_one_target/,
    );
    await expect(
      db.catalog.policyAssignment.create({
        data: { policyId: policy.id, groupId: group.id, agentId: agent.id },
      }),
    ).rejects.toThrow(/policy_assignments_one_target/);
    await expect(
      db.catalog.policyAssignment.create({ data: { policyId: policy.id, groupId: group.id } }),
    ).resolves.toMatchObject({ groupId: group.id, agentId: null });
  });
});
