// Reading a server-side gRPC stream one message at a time, for the agent listener's services.

/**
 * The messages of a server-side readable call, one at a time, without destroying the call when
 * the consumer stops early (a plain for-await over the stream would destroy it, and with it the
 * error status we still want to send). Ends when the client half-closes or the call is cancelled.
 */
export async function* messages<T>(
  call: NodeJS.ReadableStream & { on(e: "cancelled", f: () => void): unknown },
): AsyncGenerator<T> {
  const queue: T[] = [];
  let done = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  call.on("data", (m: T) => {
    queue.push(m);
    call.pause(); // one message at a time: backpressure reaches the agent through HTTP/2
    notify();
  });
  call.on("end", () => {
    done = true;
    notify();
  });
  call.on("cancelled", () => {
    done = true;
    notify();
  });
  call.on("error", () => {
    done = true;
    notify();
  });
  while (true) {
    const next = queue.shift();
    if (next !== undefined) {
      yield next;
      if (queue.length === 0 && !done) call.resume();
      continue;
    }
    if (done) return;
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
  }
}
