/**
 * A task process's CPU time, user and system, of all its threads, as the server reads it from
 * Linux's `/proc/<pid>/stat` (opened at the process's spawn, see `proc_files.ts`). The pool bounds
 * what a kept host spends while idle with it (KLYM_IDLE_HOST_CPU_MS). Elsewhere (macOS, Windows, a
 * Linux without /proc) `openCpuTime` answers `undefined`.
 */
import { AT_CLKTCK, auxvValue, openProcFile } from "./proc_files.ts";

/** A process's CPU time so far, kept open while it lives. */
export interface CpuTime {
  /** Milliseconds of CPU it has used, or `undefined` once it cannot be read (it is gone). */
  readMs(): number | undefined;
  close(): void;
}

/** Opens the CPU time of process `pid`; `undefined` where the server cannot read it. */
export function openCpuTime(pid: number): CpuTime | undefined {
  const ticksPerS = auxvValue(AT_CLKTCK);
  if (!ticksPerS) return undefined;
  const file = openProcFile(pid, "stat");
  if (!file) return undefined;
  return {
    readMs: () => {
      const ticks = cpuTicks(file.read());
      return ticks === undefined ? undefined : ticks * 1000 / ticksPerS;
    },
    close: () => file.close(),
  };
}

/** utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. */
export function cpuTicks(stat: string | undefined): number | undefined {
  if (stat === undefined) return undefined;
  // The command name may hold spaces and parentheses: fields from the 3rd start after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks : undefined;
}
