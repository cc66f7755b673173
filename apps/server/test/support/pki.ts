import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

// Real X.509 material for the mTLS tests, made with the openssl CLI at test time: a CA that signs
// the server certificate and agent certificates, and functions to issue more.

export interface KeyPair {
  key: Buffer;
  cert: Buffer;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** A self-signed CA (EC P-256, quick to make). */
export function makeCa(dir: string, name: string): KeyPair & { name: string } {
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`], dir);
  openssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      `${name}.key`,
      "-subj",
      `/CN=${name}`,
      "-days",
      "2",
      "-out",
      `${name}.crt`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  return { name, key: readFileSync(join(dir, `${name}.key`)), cert: readFileSync(join(dir, `${name}.crt`)) };
}

let serial = 1;

/** A leaf certificate signed by `ca`: a server (SAN 127.0.0.1/localhost) or a client (CN = agent ID). */
export function issue(dir: string, ca: { name: string }, cn: string, kind: "server" | "client"): KeyPair {
  const base = `${kind}-${serial++}`;
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${base}.key`], dir);
  openssl(["req", "-new", "-key", `${base}.key`, "-subj", `/CN=${cn}`, "-out", `${base}.csr`], dir);
  const ext =
    kind === "server"
      ? "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
      : "extendedKeyUsage=clientAuth\n";
  writeFileSync(join(dir, `${base}.ext`), ext);
  openssl(
    [
      "x509",
      "-req",
      "-in",
      `${base}.csr`,
      "-CA",
      `${ca.name}.crt`,
      "-CAkey",
      `${ca.name}.key`,
      "-CAcreateserial",
      "-days",
      "1",
      "-sha256",
      "-extfile",
      `${base}.ext`,
      "-out",
      `${base}.crt`,
    ],
    dir,
  );
  return { key: readFileSync(join(dir, `${base}.key`)), cert: readFileSync(join(dir, `${base}.crt`)) };
}
