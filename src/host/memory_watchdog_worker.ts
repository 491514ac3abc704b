/// <reference lib="deno.worker" />
/**
 * The memory watchdog's own thread inside a task's process. The host's main thread can be kept
 * busy by the task (every message it posts is deserialized and checked there), so the watchdog
 * runs here, where nothing of the task reaches it, and raises its alarm on stderr, where the
 * server (which holds the cap's enforcement: it kills the process) reads it. Permissions: none.
 */
import { watchMemory } from "./memory_watchdog.ts";

self.onmessage = (e: MessageEvent<{ capBytes: number; alarm: string }>) => {
  const { capBytes, alarm } = e.data;
  watchMemory(capBytes, (rss) => {
    Deno.stderr.writeSync(new TextEncoder().encode(`${alarm}${rss}\n`));
  });
};
