/**
 * Change notifications from the task registry, for live views (the dashboard's event stream).
 * Listeners run synchronously where the change happens, so they must be cheap and must not throw;
 * one that throws is logged and kept, and never disturbs the registry.
 */
import { getLogger } from "@logtape/logtape";

const logger = getLogger(["klym", "tasks"]);

export type TaskChange =
  /** A task was admitted, or its status or progress changed. */
  | { readonly type: "task"; readonly id: string }
  /** A log line numbered `seq` was appended to the task's logs. */
  | { readonly type: "log"; readonly id: string; readonly seq: number };

export type TaskListener = (change: TaskChange) => void;

export class TaskEvents {
  readonly #listeners = new Set<TaskListener>();

  /** Adds a listener; call the returned function to remove it. */
  subscribe(listener: TaskListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }

  emit(change: TaskChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (error) {
        logger.error("A task change listener failed: {error}", { error });
      }
    }
  }
}
