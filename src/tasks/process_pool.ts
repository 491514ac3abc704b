/**
 * Hands out task processes, keeping a few spawned ahead of need so a task's code starts without
 * paying for a process start and module load. A spawn that fails (out of file descriptors or
 * processes, a missing executable) throws from `acquire` for the task that asked; a failed spare
 * is logged and tried again on the next acquire.
 *
 * A process whose task ended cleanly (`TaskProcess.reusable`) may be kept idle for its principal's
 * next task (`release`): idle hosts are kept per principal and handed to that principal only,
 * never to another; at most KLYM_IDLE_HOSTS of them in all (the one idle longest goes first), each
 * for KLYM_IDLE_HOST_S at most. A spare belongs to no principal until its first task.
 *
 * A kept host's prepared Worker runs its kind's top-level code outside any slot and deadline, so
 * its CPU is bounded too: where the server can read a process's CPU time (Linux `/proc`), a kept
 * host whose CPU time grew by more than KLYM_IDLE_HOST_CPU_MS since it went idle is ended, checked
 * every IDLE_CPU_CHECK_MS. Elsewhere only KLYM_IDLE_HOST_S bounds it.
 */
import { getLogger } from "@logtape/logtape";
import { type ProcessOptions, TaskProcess } from "./task_process.ts";
import { removeTaskDenoDir } from "./sandbox_policy.ts";
import { type Every, everyInterval } from "./task_store.ts";

const logger = getLogger(["klym", "pool"]);

export type Spawn = (options: ProcessOptions) => TaskProcess;

/** Runs `fn` after `ms` unless the returned function is called first (tests pass their own). */
export type After = (ms: number, fn: () => void) => () => void;

const afterTimeout: After = (ms, fn) => {
  const timer = setTimeout(fn, ms);
  return () => clearTimeout(timer);
};

/** A process's CPU time so far in ms, `undefined` when it cannot be read (tests pass their own). */
export type CpuReader = (process: TaskProcess) => number | undefined;

/** How often kept hosts' CPU time is read while there are any. */
export const IDLE_CPU_CHECK_MS = 250;

export interface ProcessPoolOptions {
  /** Processes kept spawned ahead of need (KLYM_WARM_SPARES). */
  readonly warmSpares: number;
  /** Processes kept idle for their principal's next task, all principals together (KLYM_IDLE_HOSTS). */
  readonly idleHosts?: number;
  /** How long one is kept idle before it is ended (KLYM_IDLE_HOST_S, in ms). */
  readonly idleMs?: number;
  /** How a process starts (`new TaskProcess` by default; tests replace it). */
  readonly spawn?: Spawn;
  /** The idle timer (`setTimeout` by default; tests pass one they drive). */
  readonly after?: After;
  /** CPU time one may use while idle before it is ended (KLYM_IDLE_HOST_CPU_MS). */
  readonly idleCpuMs?: number;
  /** How a process's CPU time is read (`TaskProcess.cpuMs` by default). */
  readonly cpuTime?: CpuReader;
  /** The timer of the CPU check (`setInterval` by default; tests pass one they drive). */
  readonly every?: Every;
}

/** What a kept host's prepared Worker may still be loading: its kind's snapshot (`KindSnapshot`). */
export interface KindHold {
  readonly modulePath: string;
  release(): void;
}

/** A process for a task. */
export interface Acquired {
  readonly process: TaskProcess;
  /**
   * A kept host's hold on the snapshot its prepared Worker may still be loading: release it once
   * the task's turn is over (the host has then replaced or used that Worker).
   */
  readonly prepared?: KindHold;
}

/** A process kept for its principal, and the kind its host prepared a Worker for. */
interface Idle {
  readonly process: TaskProcess;
  readonly owner: string;
  readonly kind: KindHold | undefined;
  readonly stopTimer: () => void;
  /** Its CPU time when it went idle; `undefined` where it cannot be read (no CPU bound then). */
  readonly cpuAtIdle: number | undefined;
}

export class ProcessPool {
  readonly #spares: TaskProcess[] = [];
  readonly #live = new Set<TaskProcess>();
  /** Idle processes, the one idle longest first; each principal's are the ones it owns. */
  readonly #idle: Idle[] = [];
  #closed = false;

  readonly #options: ProcessOptions;
  readonly #warmSpares: number;
  readonly #idleHosts: number;
  readonly #idleMs: number;
  readonly #after: After;
  readonly #idleCpuMs: number;
  readonly #cpuTime: CpuReader;
  readonly #every: Every;
  readonly #spawnProcess: Spawn;
  /** Stops the CPU check; set while some idle process has a CPU time to check. */
  #stopCpuCheck: (() => void) | undefined;

  constructor(options: ProcessOptions, pool: ProcessPoolOptions) {
    this.#options = options;
    this.#warmSpares = pool.warmSpares;
    this.#idleHosts = pool.idleHosts ?? 0;
    this.#idleMs = pool.idleMs ?? 30_000;
    this.#after = pool.after ?? afterTimeout;
    this.#idleCpuMs = pool.idleCpuMs ?? 1000;
    this.#cpuTime = pool.cpuTime ?? ((process) => process.cpuMs());
    this.#every = pool.every ?? everyInterval;
    this.#spawnProcess = pool.spawn ?? ((o) => new TaskProcess(o));
  }

  /** Starts the spares; call once the server is ready to serve. Never throws. */
  warm(): void {
    while (!this.#closed && this.#spares.length < this.#warmSpares) {
      try {
        this.#spares.push(this.#spawn());
      } catch (error) {
        logger.warn("Cannot start a spare task process: {error}", { error: String(error) });
        return;
      }
    }
  }

  /**
   * A process for a task of `owner`: one kept idle for that principal (the one prepared for `kind`
   * first, a custom kind's entry path or `undefined` for the built-in ones), else a spare, else a
   * fresh spawn (which may throw the OS error).
   */
  acquire(owner: string, kind?: string): Acquired {
    if (this.#closed) throw new Error("The process pool is closed");
    const kept = this.#takeIdle(owner, kind);
    if (kept) return kept;
    const spare = this.#spares.shift();
    setTimeout(() => this.warm(), 0);
    return { process: spare ?? this.#spawn() };
  }

  /**
   * Keeps a process whose task ended cleanly for its principal's next task, its host having
   * prepared a Worker for `kind` (whose snapshot the pool then holds until the process is handed
   * out or ended); one that may not be kept is ended. Returns whether it was kept.
   */
  release(process: TaskProcess, owner: string, kind: KindHold | undefined): boolean {
    if (this.#closed || this.#idleHosts === 0 || !process.reusable) {
      process.kill();
      return false;
    }
    while (this.#idle.length >= this.#idleHosts) this.#drop(this.#idle[0]!);
    const entry: Idle = {
      process,
      owner,
      kind,
      stopTimer: this.#after(this.#idleMs, () => this.#drop(entry)),
      cpuAtIdle: this.#cpuTime(process),
    };
    this.#idle.push(entry);
    this.#syncCpuCheck();
    return true;
  }

  /** Whether `acquire(owner)` would hand out a process without spawning one. */
  hasProcessFor(owner: string): boolean {
    return this.#spares.length > 0 ||
      this.#idle.some((i) => i.owner === owner && i.process.reusable);
  }

  /** Processes spawned ahead of need, waiting for a task. */
  get spareCount(): number {
    return this.#spares.length;
  }

  /** Processes kept idle for their principals. */
  get idleCount(): number {
    return this.#idle.length;
  }

  /** The process ids of the idle processes: their memory counts like running ones'. */
  idlePids(): number[] {
    return this.#idle.map((i) => i.process.pid);
  }

  get liveCount(): number {
    return this.#live.size;
  }

  #takeIdle(owner: string, kind: string | undefined): Acquired | undefined {
    let chosen: Idle | undefined;
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      const entry = this.#idle[i]!;
      if (entry.owner !== owner) continue;
      if (!entry.process.reusable) {
        // It wrote outside the protocol or raised its alarm while idle.
        this.#drop(entry);
        continue;
      }
      if (entry.kind?.modulePath === kind) {
        chosen = entry;
        break;
      }
      chosen ??= entry;
    }
    if (!chosen) return undefined;
    chosen.stopTimer();
    this.#idle.splice(this.#idle.indexOf(chosen), 1);
    this.#syncCpuCheck();
    return { process: chosen.process, ...(chosen.kind ? { prepared: chosen.kind } : {}) };
  }

  /** Ends an idle process (its time is up, room is needed, or it is gone). */
  #drop(entry: Idle): void {
    const i = this.#idle.indexOf(entry);
    if (i === -1) return;
    this.#idle.splice(i, 1);
    entry.stopTimer();
    entry.kind?.release();
    entry.process.kill();
    this.#syncCpuCheck();
  }

  /** Runs the CPU check while some idle process has a CPU time to check, and only then. */
  #syncCpuCheck(): void {
    const needed = this.#idle.some((entry) => entry.cpuAtIdle !== undefined);
    if (needed && !this.#stopCpuCheck) {
      this.#stopCpuCheck = this.#every(IDLE_CPU_CHECK_MS, () => this.#checkCpu());
    } else if (!needed && this.#stopCpuCheck) {
      this.#stopCpuCheck();
      this.#stopCpuCheck = undefined;
    }
  }

  /** Ends each idle process whose CPU time grew by more than KLYM_IDLE_HOST_CPU_MS while idle. */
  #checkCpu(): void {
    for (const entry of [...this.#idle]) {
      if (entry.cpuAtIdle === undefined) continue;
      const now = this.#cpuTime(entry.process);
      if (now === undefined) {
        // Its file no longer reads: the process is gone, and no longer one to hand out.
        this.#drop(entry);
        continue;
      }
      const usedMs = now - entry.cpuAtIdle;
      if (usedMs <= this.#idleCpuMs) continue;
      logger.warn(
        "Kept task process {pid} of {principal} used {usedMs} ms of CPU while idle, more than " +
          "KLYM_IDLE_HOST_CPU_MS ({limitMs}): it is ended",
        {
          pid: entry.process.pid,
          principal: entry.owner,
          usedMs: Math.round(usedMs),
          limitMs: this.#idleCpuMs,
        },
      );
      this.#drop(entry);
    }
  }

  #spawn(): TaskProcess {
    const process = this.#spawnProcess(this.#options);
    this.#live.add(process);
    void process.exited.then(() => {
      this.#live.delete(process);
      const i = this.#spares.indexOf(process);
      if (i !== -1) this.#spares.splice(i, 1);
      const idle = this.#idle.find((entry) => entry.process === process);
      if (idle) this.#drop(idle);
    });
    return process;
  }

  /** Kills the spares and the idle processes; running tasks' processes are stopped by their owners. */
  async close(): Promise<void> {
    this.#closed = true;
    const idle = this.#idle.map((entry) => entry.process);
    for (const entry of [...this.#idle]) this.#drop(entry);
    const spares = this.#spares.splice(0);
    for (const spare of spares) spare.kill();
    await Promise.all([...spares, ...idle].map((s) => s.exited));
    removeTaskDenoDir();
  }
}
