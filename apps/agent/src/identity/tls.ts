import { isIP } from "node:net";
import { type ChannelCredentials, credentials } from "@grpc/grpc-js";

/**
 * `credentials.createSsl`, but the TLS ServerName (SNI) is sent only for DNS names. grpc-js puts
 * the target's host in `servername` even when it is an IP address (`127.0.0.1:8444`, the default
 * enroll address), which RFC 6066 forbids and Node answers with a DEP0123 warning on every enroll.
 * Without `servername`, Node checks the server certificate against `host`, the same address, so
 * verification is unchanged; a DNS name (or `grpc.ssl_target_name_override`) is sent as before.
 */
export function sslCredentials(...args: Parameters<typeof credentials.createSsl>): ChannelCredentials {
  const creds = credentials.createSsl(...args);
  const create = creds._createSecureConnector.bind(creds);
  creds._createSecureConnector = (target, options, callCredentials) => {
    const connector = create(target, options, callCredentials);
    // grpc-js keeps the options it passes to tls.connect on the connector.
    const tls = (connector as unknown as { connectionOptions?: { servername?: string } }).connectionOptions;
    if (tls?.servername && isIP(tls.servername)) delete tls.servername;
    return connector;
  };
  return creds;
}
