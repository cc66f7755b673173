import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  backup,
  codeOf,
  commitMessages,
  Harness,
  type TestAgent,
  Volume,
  wireChunk,
} from "./support/harness.js";
import { makeCa } from "./support/pki.js";

// Who may call: only agents whose certificate our CA signed, the catalog knows, and neither is
// revoked; and an agent reaches only its own sessions, jobs and restore points.

const h = new Harness();
let a: TestAgent;
let b: TestAgent;

beforeAll(async () => {
  await h.setUp("server_ingest_auth");
  await h.start();
  a = await h.agent();
  b = await h.agent();
});
afterAll(async () => h.tearDown());

describe("agent listener authentication", () => {
  it("refuses a client without a certificate at the TLS layer", async () => {
    const client = h.client(null);
    expect(await codeOf(client.begin({ jobId: a.jobId, volumeId: "v", size: 65536 }))).toBe(
      "BULWARK_PROTO_TRANSPORT_FAILED",
    );
    client.close();
  });

  it("refuses a certificate from another CA at the TLS layer", async () => {
    const rogue = makeCa(h.dir, "rogue-ca");
    const client = h.client(await h.agent({ ca: rogue, register: false }));
    expect(await codeOf(client.begin({ jobId: a.jobId, volumeId: "v", size: 65536 }))).toBe(
      "BULWARK_PROTO_TRANSPORT_FAILED",
    );
    client.close();
  });

  it("refuses a certificate of our CA that the catalog never issued", async () => {
    const client = h.client(await h.agent({ register: false }));
    expect(await codeOf(client.begin({ jobId: a.jobId, volumeId: "v", size: 65536 }))).toBe(
      "BULWARK_INGEST_UNAUTHENTICATED",
    );
    client.close();
  });

  it("matches a certificate row written in Node's fingerprint notation", async () => {
    const c = await h.agent();
    const row = await h.db.catalog.agentCertificate.findFirstOrThrow({ where: { agentId: c.id } });
    const colons = row.fingerprint.toUpperCase().match(/../g)!.join(":");
    expect(colons).toBe(new X509Certificate(c.tls.cert).fingerprint256);
    await h.db.catalog.agentCertificate.update({
      where: { serial: row.serial },
      data: { fingerprint: colons },
    });
    const client = h.client(c);
    const begin = await client.begin({ jobId: c.jobId, volumeId: "v", size: 65536 });
    expect(begin.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    client.close();
  });

  it("refuses a revoked agent and a revoked certificate, from the next call on", async () => {
    const c = await h.agent();
    const client = h.client(c);
    const volume = Volume.random(2);
    const begin = await client.begin({ jobId: c.jobId, volumeId: "v", size: volume.size });
    await h.db.catalog.agent.update({
      where: { id: c.id },
      data: { status: "REVOKED", revokedAt: new Date() },
    });
    expect(await codeOf(client.query(begin.sessionId, []))).toBe("BULWARK_INGEST_AGENT_REVOKED");
    const ids = volume.ids(begin.chunkIdScheme!);
    expect(
      await codeOf(
        client.upload([{ sessionId: begin.sessionId, batchSeq: 1, chunks: [wireChunk(volume, 0, ids[0]!)] }]),
      ),
    ).toBe("BULWARK_INGEST_AGENT_REVOKED");
    expect(await codeOf(client.commit(commitMessages(begin.sessionId, volume, ids)))).toBe(
      "BULWARK_INGEST_AGENT_REVOKED",
    );
    client.close();

    const d = await h.agent();
    await h.db.catalog.agentCertificate.updateMany({
      where: { agentId: d.id },
      data: { revokedAt: new Date() },
    });
    const dClient = h.client(d);
    expect(await codeOf(dClient.begin({ jobId: d.jobId, volumeId: "v", size: 65536 }))).toBe(
      "BULWARK_INGEST_AGENT_REVOKED",
    );
    dClient.close();
  });
});

describe("agents are confined to their own sessions", () => {
  it("cannot use, resume, commit or abort another agent's session, job or restore point", async () => {
    const aClient = h.client(a);
    const bClient = h.client(b);
    const volume = Volume.random(3);
    const bBackup = await backup(bClient, { ...b, jobId: await h.job(b.id) }, "shared-name", volume);
    const bBegin = await bClient.begin({ jobId: b.jobId, volumeId: "shared-name", size: volume.size });
    const ids = volume.ids(bBegin.chunkIdScheme!);
    const sid = bBegin.sessionId;

    expect(await codeOf(aClient.query(sid, [ids[0]!]))).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
    expect(
      await codeOf(
        aClient.upload([{ sessionId: sid, batchSeq: 1, chunks: [wireChunk(volume, 0, ids[0]!)] }]),
      ),
    ).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
    expect(await codeOf(aClient.commit(commitMessages(sid, volume, ids)))).toBe(
      "BULWARK_PROTO_SESSION_NOT_FOUND",
    );
    expect(await codeOf(aClient.abort(sid))).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
    expect(await codeOf(aClient.begin({ jobId: b.jobId, volumeId: "shared-name", size: volume.size }))).toBe(
      "BULWARK_PROTO_JOB_NOT_ASSIGNED",
    );
    expect(
      await codeOf(
        aClient.begin({
          jobId: a.jobId,
          volumeId: "shared-name",
          size: volume.size,
          resumeToken: bBegin.resumeToken,
        }),
      ),
    ).toBe("BULWARK_PROTO_SESSION_NOT_FOUND");
    expect(
      await codeOf(
        aClient.begin({
          jobId: a.jobId,
          volumeId: "shared-name",
          size: volume.size,
          previousRestorePointId: bBackup.commit.restorePointId,
        }),
      ),
    ).toBe("BULWARK_PROTO_RESTORE_POINT_NOT_FOUND");

    // B's session is untouched by all that.
    const row = await h.db.catalog.backupSession.findUniqueOrThrow({ where: { id: sid } });
    expect(row.status).toBe("OPEN");
    await bClient.abort(sid);
    expect((await h.db.catalog.backupSession.findUniqueOrThrow({ where: { id: sid } })).status).toBe(
      "ABORTED",
    );
    expect(await codeOf(bClient.query(sid, []))).toBe("BULWARK_PROTO_SESSION_CLOSED");
    aClient.close();
    bClient.close();
  });

  it("refuses a job that already produced its restore point", async () => {
    const client = h.client(a);
    const job = { ...a, jobId: await h.job(a.id) };
    const volume = Volume.random(1);
    const first = await backup(client, job, "once", volume);
    const err = await client.begin({ jobId: job.jobId, volumeId: "once", size: volume.size }).catch((e) => e);
    expect(err.code).toBe("BULWARK_PROTO_JOB_NOT_ASSIGNED");
    expect(err.details).toMatchObject({ restorePointId: first.commit.restorePointId });
    client.close();
  });

  it("keeps one open session per volume: another job is busy, the same job supersedes", async () => {
    const client = h.client(a);
    const first = await client.begin({ jobId: a.jobId, volumeId: "busy", size: 65536 });
    const otherJob = await h.job(a.id);
    expect(await codeOf(client.begin({ jobId: otherJob, volumeId: "busy", size: 65536 }))).toBe(
      "BULWARK_PROTO_SESSION_BUSY",
    );
    const again = await client.begin({ jobId: a.jobId, volumeId: "busy", size: 65536 });
    expect(again.sessionId).not.toBe(first.sessionId);
    expect(
      (await h.db.catalog.backupSession.findUniqueOrThrow({ where: { id: first.sessionId } })).status,
    ).toBe("ABORTED");
    client.close();
  });
});
