/**
 * Holds task processes to their memory cap from the server, where the OS lets the server read a
 * process's resident size (Linux: `/proc/<pid>/statm`). One timer samples every watched process
 * each MEMORY_CHECK_MS, from the server's own thread, which no task code runs on; a process over its
 * cap is reported once. Each process's file is opened once, while the process lives, so another
 * process that took its pid is never read (`proc_files.ts`).
 *
 * Elsewhere (macOS, Windows, or a Linux without /proc) `watchProcessMemory` answers `undefined`
 * and the host runs its own watchdog thread (`src/host/memory_watchdog.ts`), as every host did
 * before: a Worker of its own, which costs each task process an isolate (about 7 MB).
 */
import { MEMORY_CHECK_MS } from "../memory_alarm.ts";
import { AT_PAGESZ, auxvValue, openProcFile } from "./proc_files.ts";

/** A process's resident bytes, or `undefined` once it cannot be read. */
export type Reader = () => number | undefined;

interface Watched {
  readonly read: Reader;
  readonly capBytes: number;
  readonly onExceeded: (rssBytes: number) => void;
  readonly close: () => void;
}

const watched = new Set<Watched>();
let timer: ReturnType<typeof setInterval> | undefined;

/** A process's memory, opened for sampling, or `undefined` when it cannot be. */
export type OpenMemory = (pid: number) => { read: Reader; close: () => void } | undefined;

/** `/proc/<pid>/statm`: "size resident shared text lib data dt", in pages. */
const openStatm: OpenMemory = (pid) => {
  const page = auxvValue(AT_PAGESZ);
  if (page === null) return undefined;
  const file = openProcFile(pid, "statm", 256);
  if (!file) return undefined;
  return {
    read: () => {
      const resident = Number(file.read()?.split(" ")[1]);
      return Number.isFinite(resident) ? resident * page : undefined;
    },
    close: () => file.close(),
  };
};

function tick(): void {
  for (const w of watched) {
    const rss = w.read();
    if (rss === undefined || rss <= w.capBytes) continue;
    unwatch(w);
    w.onExceeded(rss);
  }
}

function unwatch(w: Watched): void {
  if (!watched.delete(w)) return;
  w.close();
  if (watched.size === 0 && timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
  }
}

/**
 * Watches process `pid` until disposed: `onExceeded` is called once, with its resident bytes,
 * when it passes `capBytes`. `undefined` when the server cannot read its memory here.
 */
export function watchProcessMemory(
  pid: number,
  capBytes: number,
  onExceeded: (rssBytes: number) => void,
  open: OpenMemory = openStatm,
): Disposable | undefined {
  const file = open(pid);
  if (!file) return undefined;
  const w: Watched = { ...file, capBytes, onExceeded };
  watched.add(w);
  timer ??= setInterval(tick, MEMORY_CHECK_MS);
  return { [Symbol.dispose]: () => unwatch(w) };
}
