import type { Http2SecureServer, Http2Server, ServerHttp2Session } from "node:http2";
import type { Server, ServerCredentials } from "@grpc/grpc-js";
import { FLOW_CONTROL_WINDOW_BYTES } from "./channel-options.js";

// grpc-js 1.14 applies `grpc-node.flow_control_window` on clients only; its servers keep Node's
// 65 535-byte HTTP/2 receive window, which caps every upload at 64 KiB per round trip (grpc-node
// PR #3058 would fix it). Uploads are received by the server, so we raise the window on every
// session ourselves. This needs grpc-js's private `http2Servers` map: checked, never assumed.

type AnyHttp2Server = Http2Server | Http2SecureServer;

const tuned = new WeakSet<AnyHttp2Server>();

function http2ServersOf(server: Server): AnyHttp2Server[] {
  const internal = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(internal instanceof Map)) {
    throw new Error(
      "@grpc/grpc-js internals changed (Server.http2Servers): applyServerFlowControl cannot raise the HTTP/2 window; check whether grpc-js now honours grpc-node.flow_control_window on servers",
    );
  }
  return [...internal.keys()].filter(
    (s): s is AnyHttp2Server => typeof (s as { on?: unknown }).on === "function",
  );
}

function tuneSession(session: ServerHttp2Session, windowBytes: number): void {
  // Connection-level window (WINDOW_UPDATE on stream 0) and every stream's initial window (SETTINGS).
  session.setLocalWindowSize(windowBytes);
  session.settings({ initialWindowSize: windowBytes });
}

/**
 * Raises the HTTP/2 receive window of every session the server accepts from now on. Call after
 * each bindAsync (listeners are created there). Idempotent.
 */
export function applyServerFlowControl(
  server: Server,
  windowBytes: number = FLOW_CONTROL_WINDOW_BYTES,
): void {
  const listeners = http2ServersOf(server);
  if (listeners.length === 0) throw new Error("applyServerFlowControl: the server has no bound listener yet");
  for (const listener of listeners) {
    if (tuned.has(listener)) continue;
    tuned.add(listener);
    listener.on("session", (session: ServerHttp2Session) => {
      if (session.destroyed) return;
      try {
        tuneSession(session, windowBytes);
      } catch {
        // A session that closes between accept and tuning has nothing left to tune.
      }
    });
  }
}

/** bindAsync as a promise, with the flow-control window applied to the new listener. Resolves to the port. */
export function bindServer(
  server: Server,
  address: string,
  credentials: ServerCredentials,
  windowBytes: number = FLOW_CONTROL_WINDOW_BYTES,
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (error, port) => {
      if (error) return reject(error);
      try {
        applyServerFlowControl(server, windowBytes);
        resolve(port);
      } catch (e) {
        reject(e);
      }
    });
  });
}
