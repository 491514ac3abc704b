/**
 * A task process's Linux `/proc` files, read by the server: nothing runs in the process to answer.
 * A file is opened once, while its process lives, and read in place each time (no open per read):
 * once the process has ended and been reaped its reads fail, so another process that took its pid
 * is never read. Elsewhere (macOS, Windows, a Linux without /proc) nothing opens.
 */

/** A `/proc/<pid>/<name>` file kept open, or `undefined` when it cannot be opened. */
export interface ProcFile {
  /** Its text now, or `undefined` once it cannot be read (its process is gone). */
  read(): string | undefined;
  close(): void;
}

/** Opens `/proc/<pid>/<name>` for reads of at most `maxBytes`; `undefined` without /proc. */
export function openProcFile(pid: number, name: string, maxBytes = 1024): ProcFile | undefined {
  if (Deno.build.os !== "linux") return undefined;
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(`/proc/${pid}/${name}`);
  } catch {
    return undefined;
  }
  const buffer = new Uint8Array(maxBytes);
  const decoder = new TextDecoder();
  return {
    read: () => {
      try {
        file.seekSync(0, Deno.SeekMode.Start);
        const n = file.readSync(buffer);
        return n ? decoder.decode(buffer.subarray(0, n)) : undefined;
      } catch {
        return undefined;
      }
    },
    close: () => file.close(),
  };
}

/** Entries of the kernel's auxiliary vector that the readers convert with. */
export const AT_PAGESZ = 6n;
export const AT_CLKTCK = 17n;

let auxv: Map<bigint, number> | null | undefined;

/** A value of the server's own auxiliary vector (`/proc/self/auxv`), `null` without /proc. */
export function auxvValue(type: bigint): number | null {
  if (auxv === undefined) {
    auxv = null;
    if (Deno.build.os !== "linux") return null;
    try {
      const bytes = Deno.readFileSync("/proc/self/auxv");
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const entries = new Map<bigint, number>();
      for (let at = 0; at + 16 <= view.byteLength; at += 16) {
        entries.set(view.getBigUint64(at, true), Number(view.getBigUint64(at + 8, true)));
      }
      auxv = entries;
    } catch {
      // No /proc: nothing to convert.
    }
  }
  return auxv?.get(type) ?? null;
}
