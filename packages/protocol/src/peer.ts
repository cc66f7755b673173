import type { PeerCertificate } from "node:tls";

/** The part of a grpc-js server call that exposes the TLS peer (present on every call kind in grpc-js 1.14). */
export interface CallWithAuthContext {
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: PeerCertificate } | null;
}

/**
 * The verified client certificate of a server call, or undefined. grpc-js returns it only when the
 * connection is TLS and the certificate verified against the server's CA (`socket.authorized`), so
 * an absent value means "not authenticated". The only accessor identity code should use:
 * `getPeer()` is just an address.
 */
export function peerCertificate(call: CallWithAuthContext): PeerCertificate | undefined {
  const context = call.getAuthContext();
  if (context?.transportSecurityType !== "ssl") return undefined;
  const cert = context.sslPeerCertificate;
  return cert && Buffer.isBuffer(cert.raw) && cert.raw.length > 0 ? cert : undefined;
}
