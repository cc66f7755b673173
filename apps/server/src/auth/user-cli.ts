// `bulwark-server user create`: makes the first admin (or any user) straight in the catalog, on
// the server host, for installs where nobody can log in to the API yet. The password comes from
// a file, never from argv (where other local users and shell history would see it).

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, roleSchema } from "@bulwark/api";
import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import { z } from "zod";
import { writeAudit } from "../audit/write.js";
import { hashPassword } from "./password.js";
import { ensureDefaultTenant } from "./tenant.js";

export const USER_USAGE =
  "usage: bulwark-server user create --email EMAIL --role admin|operator|helpdesk|auditor --password-file FILE [--name NAME]";

function usage(message: string): BulwarkError {
  return new BulwarkError("BULWARK_GENERAL_VALIDATION", `${message}\n${USER_USAGE}`);
}

/** The password file's content without its final line break (editors and `echo` add one). */
function readPasswordFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw usage(
      `cannot read --password-file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const password = text.replace(/\r?\n$/, "");
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw usage(`the password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters long`);
  }
  return password;
}

export async function userCommand(
  args: string[],
  catalog: Catalog,
  now: () => Date = () => new Date(),
): Promise<string> {
  const [verb, ...rest] = args;
  if (verb !== "create") throw usage(verb === undefined ? "missing command" : `unknown command user ${verb}`);
  let values: { email?: string; role?: string; "password-file"?: string; name?: string };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        email: { type: "string" },
        role: { type: "string" },
        "password-file": { type: "string" },
        name: { type: "string" },
      },
      strict: true,
    }));
  } catch (err) {
    throw usage((err as Error).message);
  }
  const email = z.email().max(254).safeParse(values.email?.trim().toLowerCase());
  if (!email.success) throw usage("--email needs an e-mail address");
  const role = roleSchema.safeParse(values.role?.toUpperCase());
  if (!role.success) throw usage("--role must be admin, operator, helpdesk or auditor");
  if (!values["password-file"]) throw usage("--password-file is required");
  const password = readPasswordFile(values["password-file"]);
  const displayName = (values.name ?? email.data).trim().slice(0, 200) || email.data;

  const tenantId = await ensureDefaultTenant(catalog);
  const passwordHash = await hashPassword(password);
  const at = now();
  const user = await catalog.$transaction(async (tx) => {
    const existing = await tx.user.findUnique({ where: { tenantId_email: { tenantId, email: email.data } } });
    if (existing) throw new BulwarkError("BULWARK_API_CONFLICT", `a user ${email.data} exists`);
    const created = await tx.user.create({
      data: { tenantId, email: email.data, displayName, role: role.data, passwordHash, createdAt: at },
    });
    await writeAudit(tx, {
      tenantId,
      actorType: "SYSTEM",
      actorName: "bulwark-server user create",
      action: "user.create",
      targetType: "user",
      targetId: created.id,
      outcome: "SUCCESS",
      details: { email: email.data, role: role.data, via: "cli" },
      at,
    });
    return created;
  });
  return `created ${user.role.toLowerCase()} ${user.email} (${user.id})`;
}
