// One error body for every REST failure: {"error": {"code", "message", "details"?}} with the
// catalogue's HTTP status. Unexpected errors are logged with the request ID and answered with
// BULWARK_GENERAL_INTERNAL, never with a stack trace.

import { BulwarkError } from "@bulwark/errors";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/**
 * Fastify's router answers some bad URLs itself, before any route or error handler runs (a path
 * parameter longer than maxParamLength: 414; a malformed percent-encoding: 400), with its own body.
 * Passed as the `frameworkErrors` server option so they get the same BULWARK_* error body.
 */
export function frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  if (error.statusCode === undefined || error.statusCode >= 500) {
    // e.g. a failing async route constraint: the server's fault, answered as any unexpected error.
    reply.log.error({ err: error }, "router failed");
    const err = new BulwarkError("BULWARK_GENERAL_INTERNAL", undefined, {
      details: { requestId: reply.request.id },
    });
    reply.status(500).send(err.toJSON());
    return;
  }
  // The message of these errors repeats the whole (possibly huge) path: a fixed one is enough.
  const err = new BulwarkError("BULWARK_GENERAL_VALIDATION", `bad URL (${error.code})`);
  reply.status(error.statusCode).send(err.toJSON());
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setNotFoundHandler((request, reply) => {
    const err = new BulwarkError("BULWARK_GENERAL_NOT_FOUND", `no route ${request.method} ${request.url}`);
    return reply.status(err.httpStatus).send(err.toJSON());
  });

  app.setErrorHandler((error: FastifyError | BulwarkError, request, reply) => {
    if (error instanceof BulwarkError) {
      if (error.httpStatus >= 500) request.log.error({ err: error }, "request failed");
      return reply.status(error.httpStatus).send(error.toJSON());
    }
    // Fastify's own validation and parsing errors are client errors with a 4xx status code.
    if (error.validation || (error.statusCode !== undefined && error.statusCode < 500)) {
      const err = new BulwarkError("BULWARK_GENERAL_VALIDATION", error.message, {
        details: error.validation ? { issues: error.validation } : undefined,
      });
      return reply
        .status(error.statusCode && error.statusCode !== 500 ? error.statusCode : 400)
        .send(err.toJSON());
    }
    request.log.error({ err: error }, "unexpected error");
    const err = new BulwarkError("BULWARK_GENERAL_INTERNAL", undefined, {
      details: { requestId: request.id },
    });
    return reply.status(500).send(err.toJSON());
  });
}
