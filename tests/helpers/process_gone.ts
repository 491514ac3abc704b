/**
 * When processes end, seen from a thread of its own: a Worker reads `/proc/<pid>/stat` every
 * couple of milliseconds, so a busy test (clients, servers in its process) does not delay the
 * moment it notes. A process is gone once it is no longer there, a zombie (it has ended; only its
 * parent's `wait` is left), or its pid belongs to a newer process. Linux only.
 */

/** A process's state letter and start time (clock ticks since boot), `undefined` when gone. */
export function processStat(pid: number): { state: string; start: string } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // Fields after the command name (which may hold spaces): state is the 3rd, starttime the 22nd.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0] ?? "", start: fields[19] ?? "" };
}

export class GoneWatch {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, (at: number) => void>();

  private constructor(worker: Worker) {
    this.#worker = worker;
    this.#worker.onmessage = (event: MessageEvent<{ pid: number; at: number }>) => {
      const { pid, at } = event.data;
      this.#waiting.get(pid)?.(at);
      this.#waiting.delete(pid);
    };
  }

  /**
   * A watch whose thread is running. Its module is loaded (and type-checked) when the Worker is
   * made, which takes seconds on a loaded machine: a process watched before that would be noted
   * gone only when the thread first looks, long after it went.
   */
  static async start(): Promise<GoneWatch> {
    const worker = new Worker(new URL("./process_gone_worker.ts", import.meta.url), {
      type: "module",
    });
    await new Promise<void>((resolve, reject) => {
      worker.onmessage = () => resolve();
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error(`The process watch's thread failed: ${event.message}`));
      };
    });
    worker.onerror = null;
    return new GoneWatch(worker);
  }

  /** Resolves with the time (`Date.now()`) process `pid` was seen gone. */
  gone(pid: number): Promise<number> {
    const stat = processStat(pid);
    if (!stat || stat.state === "Z" || stat.state === "X") return Promise.resolve(Date.now());
    const { promise, resolve } = Promise.withResolvers<number>();
    this.#waiting.set(pid, resolve);
    this.#worker.postMessage({ pid, start: stat.start });
    return promise;
  }

  close(): void {
    this.#worker.terminate();
  }
}
