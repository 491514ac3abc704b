/**
 * Requests from task code to its host, each with its own id: model calls (which the host relays to
 * the server) and grynya calls (which the host makes itself). Aborting the task, or a model call's
 * own signal, rejects the call at once; a cancelled model call is also cancelled in the server.
 */
import type {
  GrynyaCall,
  LlmRequest,
  LlmResponse,
  WorkerCommand,
  WorkerEvent,
} from "../protocol.ts";
import { type ErrorCode, KlymError } from "../errors.ts";
import { linkedAbort } from "../abort.ts";

type Answer = Extract<
  WorkerCommand,
  { type: "llm_response" | "llm_error" | "grynya_result" | "grynya_error" }
>;

export class HostLink {
  #nextId = 1;
  readonly #pending = new Map<number, PromiseWithResolvers<unknown>>();

  constructor(readonly post: (event: WorkerEvent) => void, readonly taskSignal: AbortSignal) {}

  generate(request: LlmRequest, options: { signal?: AbortSignal } = {}): Promise<LlmResponse> {
    return this.#request(
      (id) => ({ type: "llm_request", id, request }),
      (id) => this.post({ type: "llm_cancel", id }),
      options.signal,
    ) as Promise<LlmResponse>;
  }

  grynya(call: GrynyaCall): Promise<unknown> {
    return this.#request((id) => ({ type: "grynya", id, call }));
  }

  settle(answer: Answer): void {
    const call = this.#pending.get(answer.id);
    if (!call) return; // cancelled meanwhile
    this.#pending.delete(answer.id);
    if (answer.type === "llm_response") call.resolve(answer.response);
    else if (answer.type === "grynya_result") call.resolve(answer.value);
    else call.reject(new KlymError(answer.error.code as ErrorCode, answer.error.message));
  }

  #request(
    event: (id: number) => WorkerEvent,
    onCancel?: (id: number) => void,
    own?: AbortSignal,
  ): Promise<unknown> {
    const link = own ? linkedAbort([this.taskSignal, own]) : undefined;
    const signal = link?.signal ?? this.taskSignal;
    if (signal.aborted) {
      link?.[Symbol.dispose]();
      return Promise.reject(signal.reason);
    }
    const id = this.#nextId++;
    const call = Promise.withResolvers<unknown>();
    this.#pending.set(id, call);
    const onAbort = () => {
      if (!this.#pending.delete(id)) return;
      onCancel?.(id);
      call.reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    this.post(event(id));
    return call.promise.finally(() => {
      signal.removeEventListener("abort", onAbort);
      link?.[Symbol.dispose]();
    });
  }
}
