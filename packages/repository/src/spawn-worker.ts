import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Worker, type WorkerOptions } from "node:worker_threads";

/**
 * Starts a worker thread on the module `entry`. Compiled (a `.js` URL) it is a plain module; from
 * TypeScript sources (tests, tsx) the worker registers tsx's loader before importing it, since a
 * worker does not inherit the main thread's loader.
 */
export function spawnModuleWorker(entry: URL, options: WorkerOptions = {}): Worker {
  if (!entry.href.endsWith(".ts")) return new Worker(entry, options);
  const require = createRequire(import.meta.url);
  const api = pathToFileURL(require.resolve("tsx/esm/api").replace(/index\.cjs$/, "index.mjs")).href;
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(code, { ...options, eval: true });
}

/**
 * The module `name` beside the caller whose `import.meta.url` is `callerUrl`: `name.ts` when the
 * caller runs from TypeScript sources, `name.js` when compiled.
 */
export function siblingModule(callerUrl: string, name: string): URL {
  return new URL(`./${name}${callerUrl.endsWith(".ts") ? ".ts" : ".js"}`, callerUrl);
}
