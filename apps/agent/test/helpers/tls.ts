import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { sh } from "./system.js";

export interface TestPki {
  caPath: string;
  caKeyPath: string;
  serverCertPath: string;
  serverKeyPath: string;
  clientCertPath: string;
  clientKeyPath: string;
  agentId: string;
}

/** A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate (CN = agent ID), by real openssl. */
export function makeTestPki(dir: string): TestPki {
  const p = (name: string) => join(dir, name);
  const agentId = randomUUID();
  sh("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=Bulwark test CA",
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.pem"),
  ]);
  writeFileSync(p("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  writeFileSync(p("client.ext"), "extendedKeyUsage=clientAuth\n");
  for (const [name, cn] of [
    ["server", "bulwark-server"],
    ["client", agentId],
  ] as const) {
    sh("openssl", [
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-subj",
      `/CN=${cn}`,
      "-keyout",
      p(`${name}.key`),
      "-out",
      p(`${name}.csr`),
    ]);
    sh("openssl", [
      "x509",
      "-req",
      "-in",
      p(`${name}.csr`),
      "-CA",
      p("ca.pem"),
      "-CAkey",
      p("ca.key"),
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      p(`${name}.ext`),
      "-out",
      p(`${name}.pem`),
    ]);
  }
  return {
    caPath: p("ca.pem"),
    caKeyPath: p("ca.key"),
    serverCertPath: p("server.pem"),
    serverKeyPath: p("server.key"),
    clientCertPath: p("client.pem"),
    clientKeyPath: p("client.key"),
    agentId,
  };
}
