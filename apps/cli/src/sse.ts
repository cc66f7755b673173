// A Server-Sent Events reader (the text/event-stream format of the HTML standard): `event:`,
// `data:` (joined with newlines when repeated) and `id:` fields, a blank line ends an event, lines
// starting with ":" are comments (keep-alives). Only what `jobs watch` needs; no reconnection.

export interface ServerSentEvent {
  event: string;
  data: string;
  id: string | undefined;
}

/** Splits a byte stream into events; ends when the stream ends. */
export async function* readServerSentEvents(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<ServerSentEvent, void, undefined> {
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let id: string | undefined;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      // Lines end in \n, \r\n or \r; keep a trailing partial line for the next chunk.
      const lines = buffer.split(/\r\n|\n|\r(?!$)/);
      buffer = done ? "" : (lines.pop() ?? "");
      for (const line of lines) {
        if (line === "") {
          if (data.length > 0) yield { event: event || "message", data: data.join("\n"), id };
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
        else if (field === "id") id = value;
      }
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}
