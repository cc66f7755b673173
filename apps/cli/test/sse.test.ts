import { describe, expect, it } from "vitest";
import { readServerSentEvents, type ServerSentEvent } from "../src/sse.js";

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(encoder.encode(c));
      controller.close();
    },
  });
}

async function collect(chunks: string[]): Promise<ServerSentEvent[]> {
  const out: ServerSentEvent[] = [];
  for await (const e of readServerSentEvents(streamOf(chunks))) out.push(e);
  return out;
}

describe("readServerSentEvents", () => {
  it("reads events split anywhere across chunks, skipping comments", async () => {
    const events = await collect([
      ": keep-alive\n\nev",
      'ent: progress\ndata: {"a":1}\nid: 7\n',
      "\nevent: end\r\ndata: x\r\ndata: y\r\n\r\n",
      "data: no event name\n\n",
    ]);
    expect(events).toEqual([
      { event: "progress", data: '{"a":1}', id: "7" },
      { event: "end", data: "x\ny", id: "7" },
      { event: "message", data: "no event name", id: "7" },
    ]);
  });

  it("drops an event the stream cut off before its blank line", async () => {
    expect(await collect(["data: complete\n\ndata: cut"])).toEqual([
      { event: "message", data: "complete", id: undefined },
    ]);
  });

  it("handles a multi-byte character split across chunks", async () => {
    const bytes = new TextEncoder().encode("data: größe\n\n");
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.slice(0, 9));
        controller.enqueue(bytes.slice(9));
        controller.close();
      },
    });
    const out: ServerSentEvent[] = [];
    for await (const e of readServerSentEvents(stream)) out.push(e);
    expect(out.map((e) => e.data)).toEqual(["größe"]);
  });
});
