/**
 * A running task's model calls, answered in the server, which holds the keys. Spending is enforced
 * here, not in task code: calls in flight at once, calls in all, and tokens in all (each call's
 * `maxTokens` is clamped to the ceiling and to what is left, which is reserved until it answers).
 * Cancelling the task, or the call, aborts the provider's HTTP request.
 */
import {
  DEFAULT_MAX_TOKENS,
  type LlmRequest,
  type LlmResponse,
  type ModelAnswer,
  type ModelBudget,
} from "../protocol.ts";
import type { LlmService } from "../llm/llm_service.ts";
import { KlymError } from "../errors.ts";
import type { Sampler } from "../llm/sampling.ts";
import { linkedAbort } from "../abort.ts";
import { utf8Length } from "../text.ts";
import type { ModelCall } from "./task_observer.ts";

/** Tokens per byte of text, where a provider reports no usage (the client's sampling). */
const BYTES_PER_TOKEN = 4;

export interface ModelLimits {
  readonly taskLlmConcurrency: number;
  readonly llmMaxOutputTokens: number;
}

export interface ModelUsage {
  readonly calls: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/** One task's side of its model calls. */
export interface ModelBrokerOptions {
  readonly budget: ModelBudget;
  readonly limits: ModelLimits;
  /** The model of a call that names none; `undefined` for the service's default. */
  readonly defaultModel: string | undefined;
  /** The starting client's sampling, where it offers one. */
  readonly sampler: Sampler | undefined;
  /** Where answers and refusals go (to the task's process). */
  readonly answer: (answer: ModelAnswer) => void;
  /** Each call once it ended (answered, refused or failed), for metrics, traces and spend. */
  readonly observe?: (call: ModelCall) => void;
}

export class ModelBroker {
  readonly #calls = new Map<number, AbortController>();
  readonly #closed = new AbortController();
  #started = 0;
  #inputTokens = 0;
  #outputTokens = 0;
  /** Tokens promised to calls still in flight. */
  #reserved = 0;

  readonly #llm: LlmService;
  readonly #options: ModelBrokerOptions;

  constructor(llm: LlmService, options: ModelBrokerOptions) {
    this.#llm = llm;
    this.#options = options;
  }

  get usage(): ModelUsage {
    return {
      calls: this.#started,
      inputTokens: this.#inputTokens,
      outputTokens: this.#outputTokens,
    };
  }

  /** Answers one call, or refuses it with the limit it would break. Never throws. */
  async request(id: number, request: LlmRequest): Promise<void> {
    if (this.#closed.signal.aborted || this.#calls.has(id)) return;
    const startedAt = Date.now();
    const model = request.model ?? this.#options.defaultModel ?? "default";
    const observe = (call: Omit<ModelCall, "startedAt" | "endedAt">) =>
      this.#options.observe?.({ ...call, startedAt, endedAt: Date.now() });
    const refusal = this.#refusal(request);
    if (typeof refusal !== "number") {
      observe({ model, outcome: "refused", code: refusal.code, inputTokens: 0, outputTokens: 0 });
      return this.#options.answer({ type: "llm_error", id, error: refusal });
    }
    const reserved = refusal + estimateTokens(request);
    this.#started++;
    this.#reserved += reserved;
    const call = new AbortController();
    this.#calls.set(id, call);
    using abort = linkedAbort([this.#closed.signal, call.signal]);
    try {
      const response = await this.#llm.generate(
        {
          ...request,
          maxTokens: refusal,
          ...(request.model ?? this.#options.defaultModel
            ? { model: request.model ?? this.#options.defaultModel }
            : {}),
        },
        abort.signal,
        this.#options.sampler,
      );
      const charged = this.#charge(request, response);
      observe({ model: response.model || model, outcome: "ok", ...charged });
      if (!abort.signal.aborted) this.#options.answer({ type: "llm_response", id, response });
    } catch (error) {
      const failure = error instanceof KlymError
        ? { code: error.code, message: error.message }
        : { code: "model_error", message: error instanceof Error ? error.message : String(error) };
      observe({ model, outcome: "failed", code: failure.code, inputTokens: 0, outputTokens: 0 });
      if (abort.signal.aborted) return;
      this.#options.answer({ type: "llm_error", id, error: failure });
    } finally {
      this.#reserved -= reserved;
      this.#calls.delete(id);
    }
  }

  cancel(id: number): void {
    this.#calls.get(id)?.abort();
  }

  /** Aborts every call in flight; later requests are ignored. */
  close(): void {
    this.#closed.abort();
  }

  /** The call's `maxTokens`, or why it is refused. */
  #refusal(request: LlmRequest): number | { code: string; message: string } {
    const { taskLlmConcurrency, llmMaxOutputTokens } = this.#options.limits;
    if (this.#calls.size >= taskLlmConcurrency) {
      return {
        code: "too_many_model_calls",
        message:
          `${this.#calls.size} model calls are already in flight, the limit is ${taskLlmConcurrency} (KLYM_TASK_LLM_CONCURRENCY); await one first`,
      };
    }
    if (this.#started >= this.#options.budget.calls) {
      return {
        code: "model_call_budget",
        message:
          `The task made its ${this.#options.budget.calls} model calls, all its budget allows (params.max_steps, KLYM_AGENT_MAX_STEPS or KLYM_TASK_MAX_LLM_CALLS)`,
      };
    }
    const left = this.#options.budget.tokens - this.#inputTokens - this.#outputTokens -
      this.#reserved -
      estimateTokens(request);
    if (left <= 0) {
      return {
        code: "token_budget",
        message: `The task used ${
          this.#inputTokens + this.#outputTokens
        } tokens (${this.#reserved} more promised to calls in flight); its budget is ${this.#options.budget.tokens} (params.max_tokens, KLYM_AGENT_MAX_TOKENS or KLYM_TASK_MAX_TOKENS)`,
      };
    }
    return Math.min(request.maxTokens ?? DEFAULT_MAX_TOKENS, llmMaxOutputTokens, left);
  }

  /** Counts a call's tokens against the budget; returns them. */
  #charge(
    request: LlmRequest,
    response: LlmResponse,
  ): { inputTokens: number; outputTokens: number } {
    const reported = response.usage.inputTokens + response.usage.outputTokens > 0;
    const inputTokens = reported ? response.usage.inputTokens : estimateTokens(request);
    const outputTokens = reported
      ? response.usage.outputTokens
      : Math.ceil(utf8Length(response.text + JSON.stringify(response.toolCalls)) / BYTES_PER_TOKEN);
    this.#inputTokens += inputTokens;
    this.#outputTokens += outputTokens;
    return { inputTokens, outputTokens };
  }
}

/** A provider-neutral guess of a request's input tokens, from its size. */
function estimateTokens(request: LlmRequest): number {
  return Math.ceil(utf8Length(JSON.stringify(request.messages)) / BYTES_PER_TOKEN);
}
