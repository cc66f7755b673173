import { readFile } from "node:fs/promises";
import { BulwarkError } from "@bulwark/errors";
import { z } from "zod";

// The token file an admin hands to the agent (docs/security.md, "Token file"): one JSON object
// with the single-use token, where to enroll, where to connect afterwards, and the SHA-256 of
// the server CA certificate to pin. Read from a file or stdin ("-"), never from argv.

const address = z
  .string()
  .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { message: "expected host:port" });

export const tokenFileSchema = z.object({
  kind: z.literal("bulwark-enrollment-token"),
  version: z.literal(1),
  enrollAddress: address,
  agentAddress: address,
  caSha256: z.string().regex(/^[0-9a-f]{64}$/, { message: "expected 64 lowercase hex digits" }),
  token: z.string().regex(/^bwe_[A-Za-z0-9_-]{43}$/, { message: "not a Bulwark enrollment token" }),
  expiresAt: z.iso.datetime().optional(),
});

export type TokenFile = z.output<typeof tokenFileSchema>;

/** Largest token file read: a real one is about 400 bytes. */
const MAX_TOKEN_FILE_BYTES = 16 * 1024;

function invalid(message: string): BulwarkError {
  return new BulwarkError("BULWARK_ENROLL_TOKEN_FILE_INVALID", message);
}

export function parseTokenFile(text: string): TokenFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw invalid("the token file is not JSON");
  }
  const parsed = tokenFileSchema.safeParse(raw);
  if (!parsed.success) {
    // Never echo values: the file holds a secret.
    throw invalid(
      `the token file is not a Bulwark enrollment token file: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(file)"}: ${i.message}`).join("; ")}`,
    );
  }
  return parsed.data;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > MAX_TOKEN_FILE_BYTES) throw invalid("the token file on stdin is too large");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Reads a token file from a path, or from stdin when the path is "-". */
export async function readTokenFile(path: string): Promise<TokenFile> {
  let text: string;
  if (path === "-") text = await readStdin();
  else {
    try {
      const buf = await readFile(path);
      if (buf.length > MAX_TOKEN_FILE_BYTES) throw invalid(`${path} is too large to be a token file`);
      text = buf.toString("utf8");
    } catch (err) {
      if (err instanceof BulwarkError) throw err;
      throw invalid(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return parseTokenFile(text);
}
