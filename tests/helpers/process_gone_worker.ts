/// <reference lib="deno.worker" />
/** The thread of `GoneWatch` (process_gone.ts): notes when each watched process is gone. */
import { processStat } from "./process_gone.ts";

const watched = new Map<number, string>();

self.onmessage = (event: MessageEvent<{ pid: number; start: string }>) => {
  watched.set(event.data.pid, event.data.start);
};

function look(): void {
  for (const [pid, start] of watched) {
    const stat = processStat(pid);
    if (stat && stat.state !== "Z" && stat.state !== "X" && stat.start === start) continue;
    watched.delete(pid);
    self.postMessage({ pid, at: Date.now() });
  }
  setTimeout(look, 2);
}
look();
// Running: GoneWatch.start waits for this.
self.postMessage("ready");
