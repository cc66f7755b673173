import { defineCodes } from "../define.js";

export const queueCodes = defineCodes("QUEUE", {
  BULWARK_QUEUE_UNAVAILABLE: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary: "Redis (the job queue) does not answer; retry once it is back.",
  },
});
