/// <reference lib="deno.worker" />
/**
 * Evaluated before any task code, in a Worker that already has no permissions: removes what works
 * without a permission but would let a task reach past its sandbox. The Cache API writes under
 * Deno's cache folder (a channel between tasks and a way to fill the disk); nested Workers would
 * each get a heap of their own; stdin carries the host's commands; `Deno[Deno.internal]` exposes
 * the runtime's raw ops, which would bypass every replacement made here; Node's `process` writes
 * straight to the real stdout; `BroadcastChannel` and blob URLs are shared by the Workers of one
 * process, a way to leave something for the next task of a kept host. (Node's `worker_threads`, `process` and other I/O modules are refused
 * by the task process's import map: see src/tasks/sandbox_policy.ts.)
 */

const denoInternal = (Deno as unknown as { internal?: symbol }).internal;
if (denoInternal !== undefined) {
  delete (Deno as unknown as Record<symbol, unknown>)[denoInternal];
}
delete (Deno as unknown as Record<string, unknown>).internal;

const global = globalThis as unknown as Record<string, unknown>;
// `process` writes straight to the process's stdout and stderr, around the output capture.
// BroadcastChannel and blob URLs reach across the Workers of one process: a task would leave a
// message there for a later task of its host (hosts are kept for a principal's next task).
for (
  const name of [
    "caches",
    "CacheStorage",
    "Cache",
    "Worker",
    "SharedWorker",
    "process",
    "BroadcastChannel",
  ]
) {
  delete global[name];
}
for (const name of ["createObjectURL", "revokeObjectURL"] as const) {
  delete (URL as unknown as Record<string, unknown>)[name];
}

let closedReadable: ReadableStream<Uint8Array> | undefined;
const closedInput = {
  read: () => Promise.resolve(null),
  readSync: () => null,
  // Made on first use, as `console_capture.ts`'s streams: a stream costs a Worker the runtime's
  // streams code.
  get readable(): ReadableStream<Uint8Array> {
    return closedReadable ??= new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  },
  isTerminal: () => false,
  setRaw: () => {},
  close: () => {},
};
Object.defineProperty(Deno, "stdin", { value: closedInput, configurable: false });

export {};
