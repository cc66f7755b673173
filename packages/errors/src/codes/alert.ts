import { defineCodes } from "../define.js";

// Signed webhook alerts (docs/alerts.md): endpoint secrets and deliveries.
export const alertCodes = defineCodes("ALERT", {
  BULWARK_ALERT_DELIVERY_FAILED: {
    http: 502,
    grpc: "UNAVAILABLE",
    summary:
      "The webhook receiver did not accept the request (no 2xx answer, timeout, refused connection or redirect).",
  },
  BULWARK_ALERT_SECRET_INVALID: {
    http: 500,
    grpc: "FAILED_PRECONDITION",
    summary:
      "A webhook endpoint's stored signing secret does not decrypt with this server's CA key file (replaced key file?).",
  },
  BULWARK_ALERT_UNAVAILABLE: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary:
      "This server node was started without webhook alerting (no signing key), so it cannot create or test endpoints.",
  },
});
