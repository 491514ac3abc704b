/**
 * Holds a task's whole process to its memory cap where the server cannot sample it
 * (`src/tasks/memory_sampler.ts` does on Linux). V8's heap flag bounds only the JavaScript heap;
 * ArrayBuffers, wasm memory, nested isolates and the runtime's own allocations live outside it.
 * The watchdog samples the process's resident size on a thread of its own
 * (`memory_watchdog_worker.ts`), so no task code can stall it.
 */
import { MEMORY_ALARM, MEMORY_CHECK_MS } from "../memory_alarm.ts";

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

/** Starts the watchdog's thread; the server ends the process when it raises its alarm. */
export function startMemoryWatchdog(capBytes: number, channel: string): Worker {
  const worker = new Worker(new URL("./memory_watchdog_worker.ts", import.meta.url), {
    type: "module",
    name: "memory-watchdog",
    deno: { permissions: "none" },
  });
  worker.postMessage({ capBytes, alarm: `${channel}${MEMORY_ALARM}` });
  return worker;
}
