/**
 * Answers model requests for tasks and for `llm_generate`: through a configured provider (the AI
 * SDK, with retries on 429/5xx, a per-call timeout and cancel that aborts the HTTP request), or,
 * with no model configured, through the MCP client's own model via `sampling/createMessage`.
 */
import type { ModelMessage, ToolSet } from "ai";
import { DEFAULT_MAX_TOKENS, type LlmRequest, type LlmResponse } from "../protocol.ts";
import type { ModelCatalog } from "./model_catalog.ts";
import { KlymError } from "../errors.ts";
import type { Sampler } from "./sampling.ts";
import { linkedAbort } from "../abort.ts";

export const NO_MODEL_MESSAGE =
  "No model is configured and the client did not offer MCP sampling. Set KLYM_MODEL=provider:model " +
  "(openai:…, anthropic:…, google:…, ollama:…, openai-compatible:… with KLYM_OPENAI_COMPATIBLE_URL) " +
  "and the provider's API key (OPENAI_API_KEY, ANTHROPIC_API_KEY, GOOGLE_GENERATIVE_AI_API_KEY), " +
  "or connect with a client that supports sampling";

export const NO_SAMPLING_TOOLS_MESSAGE =
  "No model is configured and the client's MCP sampling does not take tools (sampling.tools), " +
  "which an agent needs for its tool calls. Set KLYM_MODEL=provider:model and the provider's API key, " +
  "or connect with a client whose sampling declares tools";

export interface LlmLimits {
  llmTimeoutMs: number;
  llmRetries: number;
}

export class LlmService {
  constructor(readonly catalog: ModelCatalog, readonly limits: LlmLimits) {}

  /** Whether a request could be answered at all (a model, or a client that samples). */
  available(sampler: Sampler | undefined): boolean {
    return !this.catalog.isEmpty || sampler !== undefined;
  }

  async generate(
    request: LlmRequest,
    signal: AbortSignal,
    sampler?: Sampler,
  ): Promise<LlmResponse> {
    // Throws MODEL_NOT_CONFIGURED for a model KLYM_MODEL and KLYM_MODELS do not name.
    const chosen = this.catalog.get(request.model);
    if (!chosen) {
      if (!sampler) throw new KlymError("NO_MODEL", NO_MODEL_MESSAGE);
      return await sampler(request, signal, this.limits.llmTimeoutMs);
    }
    using abort = linkedAbort([signal], this.limits.llmTimeoutMs);
    try {
      // The AI SDK is loaded with the first model call (see ModelCatalog).
      const ai = await import("ai");
      const result = await ai.generateText({
        model: await this.catalog.model(chosen.id),
        ...(request.system ? { system: request.system } : {}),
        messages: toModelMessages(request),
        ...(request.tools?.length ? { tools: toToolSet(ai, request) } : {}),
        maxOutputTokens: request.maxTokens ?? DEFAULT_MAX_TOKENS,
        ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
        maxRetries: this.limits.llmRetries,
        abortSignal: abort.signal,
      });
      return {
        model: chosen.id,
        text: result.text,
        toolCalls: result.toolCalls.map((c) => ({
          id: c.toolCallId,
          name: c.toolName,
          args: c.input,
        })),
        usage: {
          inputTokens: result.usage.inputTokens ?? 0,
          outputTokens: result.usage.outputTokens ?? 0,
        },
        finishReason: String(result.finishReason),
      };
    } catch (error) {
      if (signal.aborted) {
        throw new KlymError("cancelled", "The model call was cancelled", { cause: error });
      }
      if (abort.timedOut) {
        throw new KlymError(
          "model_timeout",
          `${chosen.id} did not answer within ${this.limits.llmTimeoutMs} ms (KLYM_LLM_TIMEOUT_MS)`,
          { cause: error },
        );
      }
      const message = error instanceof Error ? error.message : String(error);
      throw new KlymError("model_error", `${chosen.id} failed: ${message}`, { cause: error });
    }
  }
}

function toToolSet(ai: typeof import("ai"), request: LlmRequest): ToolSet {
  // No `execute`: the model's tool calls come back to the task, which runs them against grynya.
  return Object.fromEntries((request.tools ?? []).map((t) => [
    t.name,
    ai.tool({
      ...(t.description ? { description: t.description } : {}),
      inputSchema: ai.jsonSchema(t.inputSchema as Parameters<typeof ai.jsonSchema>[0]),
    }),
  ]));
}

function toModelMessages(request: LlmRequest): ModelMessage[] {
  return request.messages.map((m): ModelMessage => {
    switch (m.role) {
      case "user":
        return { role: "user", content: m.text };
      case "assistant":
        return {
          role: "assistant",
          content: [
            ...(m.text ? [{ type: "text" as const, text: m.text }] : []),
            ...m.toolCalls.map((c) => ({
              type: "tool-call" as const,
              toolCallId: c.id,
              toolName: c.name,
              input: c.args,
            })),
          ],
        };
      case "tool":
        return {
          role: "tool",
          content: m.results.map((r) => ({
            type: "tool-result" as const,
            toolCallId: r.id,
            toolName: r.name,
            output: r.isError
              ? { type: "error-text" as const, value: r.output }
              : { type: "text" as const, value: r.output },
          })),
        };
      default: {
        const _exhaustive: never = m;
        return _exhaustive;
      }
    }
  });
}
