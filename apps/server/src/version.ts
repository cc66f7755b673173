import { readFileSync } from "node:fs";

/** The server's version, from its package.json (the same in src/ and dist/ layouts). */
export const serverVersion: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;
