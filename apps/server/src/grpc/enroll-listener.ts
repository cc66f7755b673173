import { bindServer, EnrollmentServiceService } from "@bulwark/protocol";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import type { EnrollmentContext } from "../enrollment/context.js";
import { enrollmentService } from "./enrollment-service.js";

// The enroll listener: the one gRPC listener without client certificates (docs/protocol.md §2).
// It serves EnrollmentService only, over TLS that authenticates the server; Enroll is
// authenticated by the single-use token. A separate grpc-js Server because one Server applies
// one credential policy to every service it hosts.

/**
 * Enrollment messages are a CSR and a few short strings (about 2 KiB); 64 KiB refuses anything
 * larger before it is decoded, which bounds what an unauthenticated caller can make us parse.
 */
export const ENROLL_MAX_MESSAGE_BYTES = 64 * 1024;
/** In-flight calls get this long to finish on close before they are cut. */
const SHUTDOWN_GRACE_MS = 5_000;

export interface EnrollListenerOptions {
  context: EnrollmentContext;
  /** The server's certificate chain and key (PEM). */
  certChain: Buffer;
  privateKey: Buffer;
  host: string;
  /** 0 = any free port (tests). */
  port: number;
}

export interface EnrollListener {
  port: number;
  close(): Promise<void>;
}

/** Server-authenticated TLS: our certificate, no client certificate requested. */
export function enrollListenerCredentials(certChain: Buffer, privateKey: Buffer): ServerCredentials {
  return ServerCredentials.createSsl(null, [{ cert_chain: certChain, private_key: privateKey }], false);
}

export async function startEnrollListener(opts: EnrollListenerOptions): Promise<EnrollListener> {
  const server = new Server({
    "grpc.max_receive_message_length": ENROLL_MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": ENROLL_MAX_MESSAGE_BYTES,
  });
  server.addService(EnrollmentServiceService, enrollmentService(opts.context));
  const port = await bindServer(
    server,
    `${opts.host}:${opts.port}`,
    enrollListenerCredentials(opts.certChain, opts.privateKey),
  );
  return {
    port,
    async close() {
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}
