/**
 * `ctx.llm` inside a task: each call becomes an `llm_request` with its own id, answered by the
 * server. Aborting the task (or the call's own signal) sends `llm_cancel`, so the server aborts
 * the provider's HTTP request too.
 */
import type { HostCommand, LlmRequest, LlmResponse, TaskEvent } from "../protocol.ts";
import { TaskFailure } from "./task_failure.ts";

type Settlement = Extract<HostCommand, { type: "llm_response" | "llm_error" }>;

export class LlmRelay {
  #nextId = 1;
  readonly #pending = new Map<number, PromiseWithResolvers<LlmResponse>>();

  constructor(readonly emit: (event: TaskEvent) => void, readonly taskSignal: AbortSignal) {}

  generate(request: LlmRequest, options: { signal?: AbortSignal } = {}): Promise<LlmResponse> {
    const signal = options.signal
      ? AbortSignal.any([this.taskSignal, options.signal])
      : this.taskSignal;
    if (signal.aborted) return Promise.reject(signal.reason);
    const id = this.#nextId++;
    const call = Promise.withResolvers<LlmResponse>();
    this.#pending.set(id, call);
    const onAbort = () => {
      if (!this.#pending.delete(id)) return;
      this.emit({ type: "llm_cancel", id });
      call.reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    this.emit({ type: "llm_request", id, request });
    return call.promise.finally(() => signal.removeEventListener("abort", onAbort));
  }

  settle(command: Settlement): void {
    const call = this.#pending.get(command.id);
    if (!call) return; // cancelled meanwhile
    this.#pending.delete(command.id);
    if (command.type === "llm_response") call.resolve(command.response);
    else call.reject(new TaskFailure(command.error.code, command.error.message));
  }
}
