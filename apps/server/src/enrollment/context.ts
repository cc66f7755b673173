import type { Catalog } from "@bulwark/catalog";
import type { Logger } from "pino";
import type { ServerCa } from "../pki/ca.js";

/** What the enrollment and renewal calls share. */
export interface EnrollmentContext {
  catalog: Catalog;
  ca: ServerCa;
  /** PEM certificates an agent must trust for the server's TLS certificate (IssuedCertificate.ca_chain_pem). */
  serverTrustPem: string[];
  now: () => Date;
  log: Logger;
}
