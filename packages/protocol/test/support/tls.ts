import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Throwaway TLS material made with openssl at run time: a CA, a server certificate for localhost
// and 127.0.0.1, and client certificates whose CN is an agent ID, as production issues them.

export interface Pem {
  cert: Buffer;
  key: Buffer;
}

export interface TestPki {
  dir: string;
  ca: Pem;
  server: Pem;
  /** Issues a client certificate (CN = agentId) signed by the CA. */
  issueClient(agentId?: string): Pem & { agentId: string };
  /** Signs a PEM CSR as a client certificate with CN = agentId (the subject of the CSR is ignored). */
  signCsr(csrPem: string, agentId: string): Buffer;
  /** Makes a key and CSR as an enrolling agent would. */
  makeCsr(): { key: Buffer; csr: string };
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "bulwark-pki-"));
  openssl(
    [
      "req",
      "-x509",
      ...EC_KEY,
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      "1",
      "-subj",
      "/CN=bulwark-test-ca",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  let serial = 1;
  const sign = (csrFile: string, outFile: string, subject: string, ext: string): void => {
    writeFileSync(join(dir, `${outFile}.ext`), ext);
    openssl(
      [
        "x509",
        "-req",
        "-in",
        csrFile,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-out",
        outFile,
        "-days",
        "1",
        "-set_serial",
        String(serial++),
        "-subj",
        subject,
        "-extfile",
        `${outFile}.ext`,
      ],
      dir,
    );
  };
  openssl(["req", ...EC_KEY, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], dir);
  sign(
    "server.csr",
    "server.crt",
    "/CN=localhost",
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
  );
  const read = (name: string): Buffer => readFileSync(join(dir, name));
  const clientExt = "extendedKeyUsage=clientAuth\n";
  return {
    dir,
    ca: { cert: read("ca.crt"), key: read("ca.key") },
    server: { cert: read("server.crt"), key: read("server.key") },
    issueClient(agentId = randomUUID()) {
      const name = `client-${serial}`;
      openssl(
        ["req", ...EC_KEY, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", "/CN=ignored"],
        dir,
      );
      sign(`${name}.csr`, `${name}.crt`, `/CN=${agentId}`, clientExt);
      return { agentId, cert: read(`${name}.crt`), key: read(`${name}.key`) };
    },
    signCsr(csrPem, agentId) {
      const name = `csr-${serial}`;
      writeFileSync(join(dir, `${name}.csr`), csrPem);
      openssl(["req", "-in", `${name}.csr`, "-verify", "-noout"], dir); // the CSR's own signature
      sign(`${name}.csr`, `${name}.crt`, `/CN=${agentId}`, clientExt);
      return read(`${name}.crt`);
    },
    makeCsr() {
      const name = `agent-${serial++}`;
      openssl(
        ["req", ...EC_KEY, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", "/CN=enrolling"],
        dir,
      );
      return { key: read(`${name}.key`), csr: read(`${name}.csr`).toString("utf8") };
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
