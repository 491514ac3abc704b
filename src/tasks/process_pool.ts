/**
 * Hands out task processes, keeping a few spawned ahead of need so a task's code starts without
 * paying for a process start and module load.
 */
import { type ProcessOptions, TaskProcess } from "./task_process.ts";

export class ProcessPool {
  readonly #spares: TaskProcess[] = [];
  readonly #live = new Set<TaskProcess>();
  #closed = false;

  constructor(readonly options: ProcessOptions, readonly warmSpares: number) {}

  /** Starts the spares; call once the server is ready to serve. */
  warm(): void {
    while (!this.#closed && this.#spares.length < this.warmSpares) {
      this.#spares.push(this.#spawn());
    }
  }

  acquire(): TaskProcess {
    if (this.#closed) throw new Error("The process pool is closed");
    const spare = this.#spares.shift();
    queueMicrotask(() => this.warm());
    return spare ?? this.#spawn();
  }

  get liveCount(): number {
    return this.#live.size;
  }

  #spawn(): TaskProcess {
    const process = new TaskProcess(this.options);
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
  }
}
