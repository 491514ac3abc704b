/**
 * Hands out task processes, keeping a few spawned ahead of need so a task's code starts without
 * paying for a process start and module load. A spawn that fails (out of file descriptors or
 * processes, a missing executable) throws from `acquire` for the task that asked; a failed spare
 * is logged and tried again on the next acquire.
 */
import { getLogger } from "@logtape/logtape";
import { type ProcessOptions, TaskProcess } from "./task_process.ts";
import { removeTaskDenoDir } from "./sandbox_policy.ts";

const logger = getLogger(["klym", "pool"]);

export type Spawn = (options: ProcessOptions) => TaskProcess;

export interface ProcessPoolOptions {
  /** Processes kept spawned ahead of need (KLYM_WARM_SPARES). */
  readonly warmSpares: number;
  /** How a process starts (`new TaskProcess` by default; tests replace it). */
  readonly spawn?: Spawn;
}

export class ProcessPool {
  readonly #spares: TaskProcess[] = [];
  readonly #live = new Set<TaskProcess>();
  #closed = false;

  readonly #options: ProcessOptions;
  readonly #warmSpares: number;
  readonly #spawnProcess: Spawn;

  constructor(options: ProcessOptions, pool: ProcessPoolOptions) {
    this.#options = options;
    this.#warmSpares = pool.warmSpares;
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

  /** A process for a task: a spare, or a fresh spawn (which may throw the OS error). */
  acquire(): TaskProcess {
    if (this.#closed) throw new Error("The process pool is closed");
    const spare = this.#spares.shift();
    setTimeout(() => this.warm(), 0);
    return spare ?? this.#spawn();
  }

  /** Whether `acquire` would hand out a spare rather than spawn. */
  get hasSpare(): boolean {
    return this.#spares.length > 0;
  }

  /** Processes spawned ahead of need, waiting for a task. */
  get spareCount(): number {
    return this.#spares.length;
  }

  get liveCount(): number {
    return this.#live.size;
  }

  #spawn(): TaskProcess {
    const process = this.#spawnProcess(this.#options);
    this.#live.add(process);
    void process.exited.then(() => {
      this.#live.delete(process);
      const i = this.#spares.indexOf(process);
      if (i !== -1) this.#spares.splice(i, 1);
    });
    return process;
  }

  /** Kills the spares; running tasks' processes are stopped by their owners. */
  async close(): Promise<void> {
    this.#closed = true;
    const spares = this.#spares.splice(0);
    for (const spare of spares) spare.kill();
    await Promise.all(spares.map((s) => s.exited));
    removeTaskDenoDir();
  }
}
