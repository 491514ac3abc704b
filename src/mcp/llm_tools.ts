/** The provider face of Klym: one-shot completions and the configured models. */
import type { ModelCall } from "../tasks/task_observer.ts";
import {
  type CallToolResult,
  type CreateMessageRequestParams,
  inputRequired,
  inputResponse,
  type McpServer,
  type ServerContext,
} from "@modelcontextprotocol/server";
import type { TaskRecord } from "../tasks/task_registry.ts";
import { z } from "zod";
import type { LlmService } from "../llm/llm_service.ts";
import { askingSampler, type Sampler, samplerFor } from "../llm/sampling.ts";
import { requestCapabilities } from "./envelope.ts";
import { guarded, ok } from "./tool_results.ts";
import { byteLimitProblem } from "../text.ts";
import { isKlymError, KlymError } from "../errors.ts";
import { leanOutput } from "./lean_schema.ts";

const MAX_GENERATE_TOKENS = 32_768;

/** A string within KLYM_MAX_PROMPT_BYTES, counted in UTF-8 bytes like a task's prompt. */
function text(field: string, maxBytes: number) {
  return z.string({ error: `"${field}" must be a string` }).superRefine((value, ctx) => {
    const problem = byteLimitProblem(field, value, maxBytes, "KLYM_MAX_PROMPT_BYTES");
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
}

/** `llm_generate`'s input, also taken by a task-augmented call of it. */
export function generateInput(maxPromptBytes: number) {
  return z.object({
    prompt: text("prompt", maxPromptBytes).min(1, '"prompt" must not be empty'),
    system: text("system", maxPromptBytes).optional(),
    model: z.string({ error: '"model" must be a string such as "openai:gpt-4o-mini"' })
      .optional(),
    max_tokens: z.number({ error: '"max_tokens" must be a number' }).int().min(
      1,
      '"max_tokens" must be at least 1',
    )
      .max(MAX_GENERATE_TOKENS, `"max_tokens" must be at most ${MAX_GENERATE_TOKENS}`).optional(),
    temperature: z.number({ error: '"temperature" must be a number' }).min(
      0,
      '"temperature" must be between 0 and 2',
    )
      .max(2, '"temperature" must be between 0 and 2').optional(),
  });
}

/** The output a finished `generate` task gives `llm_generate` (as a plain call would answer). */
export function generateResult(task: TaskRecord): CallToolResult {
  const state = task.state;
  if (state.status === "succeeded") return ok(JSON.parse(state.resultJson));
  const error = "error" in state ? `${state.error.code}: ${state.error.message}` : state.status;
  return { isError: true, content: [{ type: "text", text: error }] };
}

/** The key of the one input request an llm_generate call may make of a 2026-07-28 client. */
const SAMPLING_KEY = "sampling";

/** What the in-band sampler needs the client asked, set before it throws `INPUT_REQUIRED`. */
interface Asked {
  params?: CreateMessageRequestParams;
}

/**
 * The client's own model for a 2026-07-28 call (no server-to-client requests in that era): the
 * answer the retried call carries, or `INPUT_REQUIRED` (the request in `asked`) to ask for it.
 * The SDK answers -32021 when the request's envelope declares no `sampling`. The answer comes
 * from the client: one of another kind, or of no kind, is refused saying so; a sampling result is checked as any sampling result.
 */
function askInBand(ctx: ServerContext, asked: Asked): Sampler {
  const sampling = requestCapabilities({}, ctx).sampling;
  return askingSampler(sampling && typeof sampling === "object" ? sampling : {}, (params) => {
    const responses = ctx.mcpReq.inputResponses;
    const answered = inputResponse(responses, SAMPLING_KEY);
    if (answered.kind === "sampling") return Promise.resolve(answered.result);
    if (answered.kind === "missing" && responses?.[SAMPLING_KEY] === undefined) {
      asked.params = params as CreateMessageRequestParams;
      throw new KlymError("INPUT_REQUIRED", "the client's model must be asked in-band");
    }
    const what = answered.kind === "missing"
      ? "no sampling result (a CreateMessageResult has role, content and model)"
      : `${
        answered.kind === "elicit" ? "an elicitation" : "a roots"
      } result, not a sampling result`;
    throw new Error(`The client's answer to input request "${SAMPLING_KEY}" is ${what}`);
  })!;
}

export function registerLlmTools(
  server: McpServer,
  llm: LlmService,
  maxPromptBytes: number,
  era: "legacy" | "modern" = "legacy",
  observe: (call: ModelCall) => void = () => {},
): void {
  const generateTool = server.registerTool("llm_generate", {
    title: "Generate text with a configured model",
    description:
      "One-shot completion with one of Klym's configured models (see list_models), or, when none is configured, " +
      "with the calling client's own model through MCP sampling. Waits for the answer (or, called as an MCP task, returns the task at once); for long work use start_async_agent_task.",
    inputSchema: generateInput(maxPromptBytes),
    outputSchema: leanOutput(z.object({
      text: z.string(),
      model: z.string(),
      usage: z.object({ input_tokens: z.number(), output_tokens: z.number() }),
      finish_reason: z.string(),
    })),
  }, (input, ctx) =>
    guarded(async () => {
      const { prompt, system, model, max_tokens, temperature } = input;
      let response;
      const asked: Asked = {};
      const startedAt = Date.now();
      try {
        response = await llm.generate(
          {
            messages: [{ role: "user", text: prompt }],
            ...(system === undefined ? {} : { system }),
            ...(model === undefined ? {} : { model }),
            ...(max_tokens === undefined ? {} : { maxTokens: max_tokens }),
            ...(temperature === undefined ? {} : { temperature }),
          },
          ctx.mcpReq.signal,
          era === "modern"
            ? askInBand(ctx, asked)
            // On this call's own stream: a client need not hold the standalone GET stream open.
            : samplerFor(server, { relatedRequest: () => ctx.mcpReq.id }),
        );
      } catch (error) {
        // A 2026-07-28 client answers the model request by calling again with inputResponses.
        if (isKlymError(error, "INPUT_REQUIRED") && asked.params) {
          return inputRequired({
            inputRequests: { [SAMPLING_KEY]: inputRequired.createMessage(asked.params) },
          });
        }
        observe({
          model: model ?? "default",
          outcome: "failed",
          code: isKlymError(error) ? error.code : "model_error",
          inputTokens: 0,
          outputTokens: 0,
          startedAt,
          endedAt: Date.now(),
        });
        throw error;
      }
      observe({
        model: response.model,
        outcome: "ok",
        inputTokens: response.usage.inputTokens,
        outputTokens: response.usage.outputTokens,
        startedAt,
        endedAt: Date.now(),
      });
      return ok({
        text: response.text,
        model: response.model,
        usage: {
          input_tokens: response.usage.inputTokens,
          output_tokens: response.usage.outputTokens,
        },
        finish_reason: response.finishReason,
      });
    }));

  // As an MCP task it runs as a `generate` task (mcp_server.ts), visible to every face.
  generateTool.execution = { taskSupport: "optional" };

  server.registerTool("list_models", {
    title: "List configured models",
    description:
      "The models Klym can use (KLYM_MODEL, KLYM_MODELS), the default one, and whether the calling client's sampling is available as a fallback.",
    inputSchema: z.object({}),
    outputSchema: leanOutput(z.object({
      models: z.array(
        z.object({ id: z.string(), provider: z.string(), name: z.string(), default: z.boolean() }),
      ),
      default_model: z.string().optional(),
      client_sampling: z.boolean(),
    })),
  }, () =>
    guarded(() =>
      ok({
        models: llm.catalog.list().map((m) => ({
          id: m.id,
          provider: m.provider,
          name: m.name,
          default: m.isDefault,
        })),
        ...(llm.catalog.defaultId ? { default_model: llm.catalog.defaultId } : {}),
        client_sampling: samplerFor(server) !== undefined,
      })
    ));
}
