import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isBulwarkError } from "@bulwark/errors";
import { describe, expect, it } from "vitest";
import { DEFAULT_SERVER_URL, readCliConfig, resolveSettings, writeCliConfig } from "../src/index.js";

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
    expect(resolveSettings({}, noFile)).toMatchObject({
      server: DEFAULT_SERVER_URL,
      token: undefined,
      tokenSource: undefined,
    });
  });

  it("takes flags over environment over file", () => {
    const file = configFile({ server: "https://file.example:8080", token: "file-token" });
    chmodSync(file, 0o600);
    const tokenFile = join(mkdtempSync(join(tmpdir(), "bulwark-cli-")), "token");
    writeFileSync(tokenFile, "flag-token\n");
    const env = { BULWARK_CLI_CONFIG: file, BULWARK_URL: "https://env.example" };
    expect(resolveSettings({}, env)).toMatchObject({
      server: "https://env.example",
      token: "file-token",
      tokenSource: "config",
      warnings: [],
    });
    expect(resolveSettings({}, { ...env, BULWARK_TOKEN: "env-token" })).toMatchObject({
      token: "env-token",
      tokenSource: "BULWARK_TOKEN",
    });
    expect(resolveSettings({ server: "http://flag.example/", tokenFile }, env)).toMatchObject({
      server: "http://flag.example",
      token: "flag-token",
      tokenSource: "token-file",
    });
    expect(resolveSettings({}, { BULWARK_CLI_CONFIG: file })).toMatchObject({
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

  it("warns when the config file holding a token is readable by others", () => {
    const file = configFile({ token: "secret-token" });
    chmodSync(file, 0o644);
    const settings = resolveSettings({}, { BULWARK_CLI_CONFIG: file });
    expect(settings.warnings).toHaveLength(1);
    expect(settings.warnings[0]).toContain("chmod 600");
    expect(settings.warnings[0]).not.toContain("secret-token");
  });

  it("refuses an empty or missing token file with BULWARK_CLI_FILE", () => {
    const dir = mkdtempSync(join(tmpdir(), "bulwark-cli-"));
    writeFileSync(join(dir, "empty"), "\n");
    for (const path of [join(dir, "empty"), join(dir, "missing")]) {
      try {
        resolveSettings({ tokenFile: path }, noFile);
        throw new Error("expected an error");
      } catch (err) {
        expect((err as { code?: string }).code).toBe("BULWARK_CLI_FILE");
      }
    }
  });

  it("writes the config file 0600 in a 0700 directory and reads it back", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "bulwark-cli-")), "nested", "bulwark");
    const path = join(dir, "cli.json");
    writeCliConfig(path, { server: "http://127.0.0.1:8080", token: "bwk_x_y", tokenId: "id-1" });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(readCliConfig(path, true)).toEqual({
      server: "http://127.0.0.1:8080",
      token: "bwk_x_y",
      tokenId: "id-1",
    });
    // Rewriting keeps the mode even under a permissive umask.
    const old = process.umask(0);
    try {
      writeCliConfig(path, { server: "http://127.0.0.1:8080" });
    } finally {
      process.umask(old);
    }
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ server: "http://127.0.0.1:8080" });
  });

  it("lets login name a config file that does not exist yet", () => {
    const path = join(mkdtempSync(join(tmpdir(), "bulwark-cli-")), "new.json");
    expect(resolveSettings({}, { BULWARK_CLI_CONFIG: path }, { createsConfig: true })).toMatchObject({
      configPath: path,
      config: {},
    });
  });
});
