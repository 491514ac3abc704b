/**
 * Holds a task's whole process to its memory cap. V8's heap flag bounds only the JavaScript heap;
 * ArrayBuffers, wasm memory and the runtime's own allocations live outside it. The host's own
 * thread samples the process's resident size, which no task code can stall (it runs in the Worker).
 */

/** How often the resident size is sampled. */
export const MEMORY_CHECK_MS = 10;

export function watchMemory(
  capBytes: number,
  onExceeded: (rssBytes: number) => void,
  rss: () => number = () => Deno.memoryUsage().rss,
): Disposable {
  let fired = false;
  const timer = setInterval(() => {
    const used = rss();
    if (used <= capBytes || fired) return;
    fired = true;
    onExceeded(used);
  }, MEMORY_CHECK_MS);
  return { [Symbol.dispose]: () => clearInterval(timer) };
}
