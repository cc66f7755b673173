import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { BulwarkError } from "@bulwark/errors";
import { z } from "zod";
import type { TlsFiles } from "../upload/transport.js";

// The agent's identity on disk (docs/agent.md, "Identity"): <stateDir>/identity/ holds
//   agent.json  {version, agentId, agentAddress, enrollAddress, caFingerprint, notAfter, renewAfter}
//   ca.pem      the CA(s) trusted for the server
//   cert.pem    this agent's client certificate (CN = agent ID)
//   key.pem     its private key, mode 0600
// The four files change together (enrollment, renewal). A save writes them into `.staging/`,
// marks the set complete, then renames each into place; a crash in between is finished (or the
// incomplete set discarded) by the next load, so the agent never pairs a key with another cert.

export const IDENTITY_DIR = "identity";
export const IDENTITY_VERSION = 1;
const STAGING = ".staging";
const COMPLETE_MARKER = "COMPLETE";
const FILES = ["ca.pem", "cert.pem", "key.pem", "agent.json"] as const;

const addressSchema = z.string().regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/);

export const agentIdentityRecordSchema = z.object({
  version: z.literal(IDENTITY_VERSION),
  agentId: z.uuid(),
  agentAddress: addressSchema,
  enrollAddress: addressSchema,
  caFingerprint: z.string().regex(/^[0-9a-f]{64}$/),
  notAfter: z.iso.datetime(),
  renewAfter: z.iso.datetime(),
});

export type AgentIdentityRecord = z.output<typeof agentIdentityRecordSchema>;

export interface AgentIdentity extends AgentIdentityRecord {
  dir: string;
  /** Paths for mtlsCredentials. */
  tls: TlsFiles;
}

export interface AgentIdentityMaterial {
  record: AgentIdentityRecord;
  caPem: string;
  certPem: string;
  keyPem: string;
}

export function identityDir(stateDir: string): string {
  return join(stateDir, IDENTITY_DIR);
}

function notEnrolled(dir: string, why: string): BulwarkError {
  return new BulwarkError("BULWARK_ENROLL_NOT_ENROLLED", `no usable agent identity in ${dir}: ${why}`, {
    details: { dir },
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  // Windows cannot open a directory for fsync; its renames are durable via the journal.
  if (process.platform === "win32") return;
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writeDurable(path: string, content: string, mode: number): Promise<void> {
  const handle = await open(path, "wx", mode);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await chmod(path, mode); // the mode given to open() is filtered by the umask
}

/** Moves a complete staged set into place; idempotent, so a crash half-way is finished later. */
async function commitStaging(dir: string): Promise<void> {
  const staging = join(dir, STAGING);
  for (const name of FILES) {
    if (await exists(join(staging, name))) await rename(join(staging, name), join(dir, name));
  }
  await fsyncDir(dir);
  await rm(staging, { recursive: true, force: true });
}

/** Finishes or discards an interrupted save. */
async function recover(dir: string): Promise<void> {
  const staging = join(dir, STAGING);
  if (!(await exists(staging))) return;
  if (await exists(join(staging, COMPLETE_MARKER))) await commitStaging(dir);
  else await rm(staging, { recursive: true, force: true });
}

/** Writes the identity atomically (see the header). */
export async function saveAgentIdentity(
  stateDir: string,
  material: AgentIdentityMaterial,
): Promise<AgentIdentity> {
  const record = agentIdentityRecordSchema.parse(material.record);
  const dir = identityDir(stateDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  await recover(dir);
  const staging = join(dir, STAGING);
  await mkdir(staging, { mode: 0o700 });
  await writeDurable(join(staging, "ca.pem"), material.caPem, 0o644);
  await writeDurable(join(staging, "cert.pem"), material.certPem, 0o644);
  await writeDurable(join(staging, "key.pem"), material.keyPem, 0o600);
  await writeDurable(join(staging, "agent.json"), `${JSON.stringify(record, null, 2)}\n`, 0o644);
  await fsyncDir(staging);
  await writeDurable(join(staging, COMPLETE_MARKER), `${randomBytes(4).toString("hex")}\n`, 0o600);
  await fsyncDir(staging);
  await commitStaging(dir);
  return withPaths(dir, record);
}

function withPaths(dir: string, record: AgentIdentityRecord): AgentIdentity {
  return {
    ...record,
    dir,
    tls: { caPath: join(dir, "ca.pem"), certPath: join(dir, "cert.pem"), keyPath: join(dir, "key.pem") },
  };
}

/** The stored identity, or undefined when this agent never enrolled (no identity directory). */
export async function loadAgentIdentity(stateDir: string): Promise<AgentIdentity | undefined> {
  const dir = identityDir(stateDir);
  if (!(await exists(dir))) return undefined;
  await recover(dir);
  const present = new Set(await readdir(dir));
  if (present.size === 0) return undefined;
  const missing = FILES.filter((f) => !present.has(f));
  if (missing.length > 0) throw notEnrolled(dir, `missing ${missing.join(", ")}`);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(join(dir, "agent.json"), "utf8"));
  } catch (err) {
    throw notEnrolled(dir, `agent.json is not JSON (${(err as Error).message})`);
  }
  const parsed = agentIdentityRecordSchema.safeParse(raw);
  if (!parsed.success) throw notEnrolled(dir, `agent.json is invalid (${parsed.error.issues[0]?.message})`);
  return withPaths(dir, parsed.data);
}

/** The stored identity; an agent that never enrolled gets BULWARK_ENROLL_NOT_ENROLLED. */
export async function requireAgentIdentity(stateDir: string): Promise<AgentIdentity> {
  const identity = await loadAgentIdentity(stateDir);
  if (!identity) throw notEnrolled(identityDir(stateDir), "run bulwark-agent enroll first");
  return identity;
}
