/**
 * Holds task processes to their memory cap from the server, where the OS lets the server read a
 * process's resident size (Linux: `/proc/<pid>/statm`). One timer samples every watched process
 * each MEMORY_CHECK_MS, from the server's own thread, which no task code runs on; a process over its
 * cap is reported once. Each process's file is opened once, while the process lives: once it has
 * ended, its reads fail, and never read another process that took its pid.
 *
 * Elsewhere (macOS, Windows, or a Linux without /proc) `watchProcessMemory` answers `undefined`
 * and the host runs its own watchdog thread (`src/host/memory_watchdog.ts`), as every host did
 * before: a Worker of its own, which costs each task process an isolate (about 7 MB).
 */
import { MEMORY_CHECK_MS } from "../memory_alarm.ts";

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
let pageBytes: number | null | undefined;

/** The page size from the kernel's auxiliary vector (AT_PAGESZ), `null` without /proc. */
function pageSize(): number | null {
  if (pageBytes !== undefined) return pageBytes;
  pageBytes = null;
  if (Deno.build.os !== "linux") return pageBytes;
  try {
    const auxv = Deno.readFileSync("/proc/self/auxv");
    const view = new DataView(auxv.buffer, auxv.byteOffset, auxv.byteLength);
    const AT_PAGESZ = 6n;
    for (let at = 0; at + 16 <= view.byteLength; at += 16) {
      if (view.getBigUint64(at, true) === AT_PAGESZ) {
        pageBytes = Number(view.getBigUint64(at + 8, true));
        break;
      }
    }
  } catch {
    // No /proc: the hosts watch themselves.
  }
  return pageBytes;
}

/** A process's memory, opened for sampling, or `undefined` when it cannot be. */
export type OpenMemory = (pid: number) => { read: Reader; close: () => void } | undefined;

/** `/proc/<pid>/statm`, read in place each time (no open per sample). */
const openStatm: OpenMemory = (pid) => {
  const page = pageSize();
  if (page === null) return undefined;
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(`/proc/${pid}/statm`);
  } catch {
    return undefined;
  }
  const buffer = new Uint8Array(256);
  const decoder = new TextDecoder();
  return {
    read: () => {
      try {
        file.seekSync(0, Deno.SeekMode.Start);
        const n = file.readSync(buffer);
        if (!n) return undefined;
        // "size resident shared text lib data dt", in pages.
        const resident = Number(decoder.decode(buffer.subarray(0, n)).split(" ")[1]);
        return Number.isFinite(resident) ? resident * page : undefined;
      } catch {
        return undefined;
      }
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
