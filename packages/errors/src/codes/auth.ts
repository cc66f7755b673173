import { defineCodes } from "../define.js";

// REST authentication and authorization. Unknown user, wrong password and disabled account share
// one code on purpose: the answer must not tell an attacker which e-mail addresses exist.
export const authCodes = defineCodes("AUTH", {
  BULWARK_AUTH_UNAUTHENTICATED: {
    http: 401,
    grpc: "UNAUTHENTICATED",
    summary: "No valid session cookie or API token came with the request (missing, expired or revoked).",
  },
  BULWARK_AUTH_INVALID_CREDENTIALS: {
    http: 401,
    grpc: "UNAUTHENTICATED",
    summary: "The e-mail address or password is wrong, or the account is disabled.",
  },
  BULWARK_AUTH_FORBIDDEN: {
    http: 403,
    grpc: "PERMISSION_DENIED",
    summary: "The caller's role does not allow this action.",
  },
  BULWARK_AUTH_CSRF: {
    http: 403,
    grpc: "PERMISSION_DENIED",
    summary: "A state-changing request with a session cookie lacks the matching x-csrf-token header.",
  },
  BULWARK_AUTH_RATE_LIMITED: {
    http: 429,
    grpc: "RESOURCE_EXHAUSTED",
    summary: "Too many failed logins for this account or address; retry after the time in details.",
  },
});
