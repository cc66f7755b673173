// The process side of Io: standard input for `--password-stdin` and a no-echo prompt on the
// terminal. Kept apart from the commands so that tests drive them through Io instead.

import { createInterface } from "node:readline";
import { Writable } from "node:stream";

export async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Asks on stderr (stdout stays clean for --json) and reads a line without echoing it. */
export function promptSecret(question: string): Promise<string> {
  return promptLine(question, true);
}

export function promptLine(question: string, secret = false): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk, _encoding, callback) {
      if (!muted) process.stderr.write(chunk);
      callback();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  return new Promise((resolve, reject) => {
    rl.question(question, (answer) => {
      rl.close();
      if (secret) process.stderr.write("\n");
      resolve(answer);
    });
    muted = secret;
    rl.once("SIGINT", () => {
      rl.close();
      reject(new Error("interrupted"));
    });
  });
}
