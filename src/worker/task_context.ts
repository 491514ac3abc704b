/** The `ctx` a task kind receives: its inputs, its abort signal and the ways to report back. */
import type { TaskEvent, TaskSpec } from "../protocol.ts";

export interface TaskContext {
  readonly taskId: string;
  readonly kind: string;
  readonly prompt: string | undefined;
  readonly params: Readonly<Record<string, unknown>>;
  /** Aborts on cancel, on the task's deadline and on server shutdown. */
  readonly signal: AbortSignal;
  /** Shows in `check_task_status` as `progress`. */
  progress(done: number, total?: number, message?: string): void;
  /** A connected MCP client to grynya. */
  grynya(): Promise<never>;
  /** Stores an intermediate result in grynya's graph. */
  save(value: unknown): Promise<never>;
}

export type TaskKind = (ctx: TaskContext) => unknown;

export function createTaskContext(
  spec: TaskSpec,
  signal: AbortSignal,
  emit: (event: TaskEvent) => void,
): TaskContext {
  const notYet = (what: string) =>
    Promise.reject(
      new Error(
        `ctx.${what} is not available in this version of Klym: grynya access is not built yet`,
      ),
    );
  return {
    taskId: spec.taskId,
    kind: spec.kind,
    prompt: spec.prompt,
    params: spec.params,
    signal,
    progress(done, total, message) {
      if (!Number.isFinite(done) || (total !== undefined && !Number.isFinite(total))) {
        throw new TypeError(`ctx.progress needs finite numbers, received ${done}, ${total}`);
      }
      emit({
        type: "progress",
        done,
        ...(total === undefined ? {} : { total }),
        ...(message === undefined ? {} : { message: String(message).slice(0, 1024) }),
      });
    },
    grynya: () => notYet("grynya()"),
    save: () => notYet("save()"),
  };
}
