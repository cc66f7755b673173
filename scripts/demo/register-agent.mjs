// Stand-in for enrollment and scheduling, used only by the benchmark harness
// (bench/src/tools/bulwark-agent.ts) to drive the one-shot `bulwark-agent backup`: records the agent
// and its certificate in the catalog and creates one backup job. Prints the job's ID. Runs from
// the built catalog package (pnpm build first). scripts/start uses the real enrollment and jobs.
//   node scripts/demo/register-agent.mjs --ca ca.pem --cert agent.pem --hostname NAME
import { createHash, randomUUID, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { createCatalogClient } from "../../packages/catalog/dist/index.js";

const { values } = parseArgs({
  options: { ca: { type: "string" }, cert: { type: "string" }, hostname: { type: "string" } },
});
// --ca names the CA that signed --cert; only the server's CA row is recorded, so it is not read.
if (!values.cert) {
  console.error("usage: register-agent.mjs --ca CA.pem --cert AGENT.pem [--hostname NAME]");
  process.exit(2);
}
const catalog = createCatalogClient({
  databaseUrl: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/bulwark",
});
try {
  const cert = new X509Certificate(readFileSync(values.cert));
  const agentId = /CN=([0-9a-f-]{36})/.exec(cert.subject)?.[1];
  if (!agentId) throw new Error(`the agent certificate's CN must be the agent ID (a UUID): ${cert.subject}`);
  // `bulwark-server repo init` creates the default tenant with the repository.
  const tenant = await catalog.tenant.findFirstOrThrow({ where: { slug: "default" } });
  // The certificate comes from the bench's own CA (accepted through BULWARK_AGENT_CA_FILE); it is
  // recorded against the CA the server created at its first start, so no CA row without a key
  // appears (a server starting later would refuse such a row).
  const ca = await catalog.certificateAuthority.findFirst({
    where: { retiredAt: null },
    orderBy: { createdAt: "desc" },
  });
  if (!ca) throw new Error("the server has not created its CA yet: start bulwark-server once first");
  await catalog.agent.upsert({
    where: { id: agentId },
    create: {
      id: agentId,
      tenantId: tenant.id,
      machineId: agentId,
      hostname: values.hostname ?? hostname(),
      os: process.platform,
      agentVersion: "0.1.0",
    },
    update: {},
  });
  await catalog.agentCertificate.upsert({
    where: { serial: cert.serialNumber },
    create: {
      serial: cert.serialNumber,
      agentId,
      caId: ca.id,
      fingerprint: createHash("sha256").update(cert.raw).digest("hex"),
      notAfter: new Date(cert.validTo),
    },
    update: {},
  });
  const job = await catalog.job.create({
    data: {
      tenantId: tenant.id,
      kind: "BACKUP",
      state: "QUEUED",
      idempotencyKey: randomUUID(),
      agentId,
      params: { demo: true },
    },
  });
  console.log(job.id);
} finally {
  await catalog.$disconnect();
}
