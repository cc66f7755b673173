import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isBulwarkError } from "@bulwark/errors";
import { describe, expect, it } from "vitest";
import { DEFAULT_SERVER_URL, resolveSettings } from "../src/index.js";

function configFile(content: unknown): string {
  const path = join(mkdtempSync(join(tmpdir(), "bulwark-cli-")), "cli.json");
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

describe("CLI settings", () => {
  const noFile = {
    BULWARK_CLI_CONFIG: undefined,
    XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), "bulwark-xdg-")),
  };

  it("defaults to the local server", () => {
    expect(resolveSettings({}, noFile)).toEqual({ server: DEFAULT_SERVER_URL, token: undefined });
  });

  it("takes flags over environment over file", () => {
    const file = configFile({ server: "https://file.example:8080", token: "file-token" });
    const env = { BULWARK_CLI_CONFIG: file, BULWARK_URL: "https://env.example" };
    expect(resolveSettings({}, env)).toEqual({ server: "https://env.example", token: "file-token" });
    expect(resolveSettings({ server: "http://flag.example/", token: "t" }, env)).toEqual({
      server: "http://flag.example",
      token: "t",
    });
    expect(resolveSettings({}, { BULWARK_CLI_CONFIG: file })).toEqual({
      server: "https://file.example:8080",
      token: "file-token",
    });
  });

  it("rejects a bad URL, an unknown key and a missing explicit file with typed errors", () => {
    const bad = (fn: () => unknown, code: string) => {
      try {
        fn();
      } catch (err) {
        expect(isBulwarkError(err)).toBe(true);
        expect((err as { code: string }).code).toBe(code);
        return (err as Error).message;
      }
      throw new Error("expected an error");
    };
    expect(bad(() => resolveSettings({ server: "ftp://x" }, noFile), "BULWARK_CONFIG_INVALID")).toContain(
      "ftp://x",
    );
    expect(
      bad(
        () => resolveSettings({}, { BULWARK_CLI_CONFIG: configFile({ sever: "x" }) }),
        "BULWARK_CONFIG_INVALID",
      ),
    ).toContain("sever");
    expect(
      bad(
        () => resolveSettings({}, { BULWARK_CLI_CONFIG: "/nonexistent/cli.json" }),
        "BULWARK_CONFIG_FILE_UNREADABLE",
      ),
    ).toContain("/nonexistent/cli.json");
  });
});
