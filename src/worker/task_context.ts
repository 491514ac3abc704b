/** The `ctx` a task kind receives: its inputs, its abort signal and the ways to report back. */
import type { TaskEvent, TaskSpec } from "../protocol.ts";
import { GrynyaClient } from "./grynya_client.ts";
import { GraphWriter, type SaveRecord } from "./graph_writer.ts";
import type { LlmRelay } from "./llm_relay.ts";

export interface TaskContext {
  readonly taskId: string;
  readonly kind: string;
  readonly prompt: string | undefined;
  readonly params: Readonly<Record<string, unknown>>;
  /** Aborts on cancel, on the task's deadline and on server shutdown. */
  readonly signal: AbortSignal;
  /** Shows in `check_task_status` as `progress`. */
  progress(done: number, total?: number, message?: string): void;
  /** A connected MCP client to grynya (connected on first use, closed when the task ends). */
  grynya(): Promise<GrynyaClient>;
  /** Stores an intermediate result in grynya's graph through its write tool. */
  save(value: unknown): Promise<SaveRecord>;
  /** The model, reached through the server (keys never enter a task). */
  readonly llm: Pick<LlmRelay, "generate">;
  /** Limits of the agent loop set by the server. */
  readonly limits: TaskSpec["agent"];
}

export type TaskKind = (ctx: TaskContext) => unknown;

export interface OwnedContext {
  readonly ctx: TaskContext;
  readonly writer: GraphWriter;
  /** Closes what the task opened (its grynya connection). */
  dispose(): Promise<void>;
}

export function createTaskContext(
  spec: TaskSpec,
  signal: AbortSignal,
  emit: (event: TaskEvent) => void,
  llm: LlmRelay,
): OwnedContext {
  const grynya = new GrynyaClient(spec.grynya, signal);
  const writer = new GraphWriter(grynya, spec.grynya.write, spec);
  const ctx: TaskContext = {
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
    grynya: async () => {
      await grynya.connect();
      return grynya;
    },
    save: (value) => writer.save(value),
    llm,
    limits: spec.agent,
  };
  return { ctx, writer, dispose: () => grynya.close() };
}
