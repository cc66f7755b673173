import { defineCodes } from "../define.js";

export const generalCodes = defineCodes("GENERAL", {
  BULWARK_GENERAL_INTERNAL: {
    http: 500,
    grpc: "INTERNAL",
    summary: "An unexpected fault inside Bulwark; the request changed nothing that it did not finish.",
  },
  BULWARK_GENERAL_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "The route or resource does not exist.",
  },
  BULWARK_GENERAL_VALIDATION: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "The input failed validation; the details name each field and what is wrong.",
  },
});
