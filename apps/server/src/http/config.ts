// The REST API's settings from bulwark-server's configuration (packages/config, docs/api.md).

import type { ServerConfig } from "@bulwark/config";
import type { ApiOptions } from "./index.js";

export function apiOptionsFromConfig(
  config: Pick<
    ServerConfig,
    "httpSecureCookies" | "consoleSessionIdleSeconds" | "consoleSessionMaxSeconds" | "queuePrefix"
  >,
): Pick<ApiOptions, "secureCookies" | "session" | "loginRateLimit"> {
  return {
    secureCookies: config.httpSecureCookies,
    session: {
      idleSeconds: config.consoleSessionIdleSeconds,
      absoluteSeconds: config.consoleSessionMaxSeconds,
    },
    // The installation's Redis namespace: installations sharing one Redis count failures apart.
    loginRateLimit: { keyPrefix: config.queuePrefix },
  };
}
