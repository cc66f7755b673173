import { BulwarkError } from "@bulwark/errors";
import type { AgentFacts } from "@bulwark/protocol";
import { z } from "zod";

// AgentFacts as the server accepts them: every field bounded and restricted to the characters it
// can need, because they end up in the console, logs and audit details.

const printable = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[\x20-\x7e]*$/, { message: "only printable ASCII" });

export const agentFactsSchema = z.object({
  hostname: z
    .string()
    .min(1)
    .max(253)
    .regex(/^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/, {
      message: "a host name: letters, digits, '.', '-', '_'",
    }),
  os: z
    .string()
    .min(1)
    .max(32)
    .regex(/^[a-z0-9_-]+$/, { message: "lowercase letters, digits, '-', '_'" }),
  osVersion: printable(128),
  arch: z
    .string()
    .max(32)
    .regex(/^[A-Za-z0-9_-]*$/, { message: "letters, digits, '-', '_'" }),
  agentVersion: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[0-9A-Za-z.+-]+$/, { message: "a version: letters, digits, '.', '+', '-'" }),
  machineId: z
    .string()
    .min(8)
    .max(128)
    .regex(/^[A-Za-z0-9{}._:-]+$/, { message: "letters, digits, '{', '}', '.', '_', ':', '-'" }),
});

export type ValidFacts = z.output<typeof agentFactsSchema>;

export function validateFacts(facts: AgentFacts | undefined): ValidFacts {
  if (!facts) throw new BulwarkError("BULWARK_ENROLL_FACTS_INVALID", "facts are missing");
  const parsed = agentFactsSchema.safeParse(facts);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((i) => ({ field: i.path.join("."), problem: i.message }));
    throw new BulwarkError(
      "BULWARK_ENROLL_FACTS_INVALID",
      `invalid agent facts: ${fields.map((f) => `${f.field}: ${f.problem}`).join("; ")}`,
      { details: { fields } },
    );
  }
  return parsed.data;
}
