/**
 * The zero-config path: ask the connected MCP client's own model through `sampling/createMessage`,
 * with tools when the client declares `sampling.tools`.
 */
import type { McpServer, RequestId } from "@modelcontextprotocol/server";
import { z } from "zod";
import { DEFAULT_MAX_TOKENS, type LlmRequest, type LlmResponse } from "../protocol.ts";
import { KlymError } from "../errors.ts";
import { linkedAbort } from "../abort.ts";

export type Sampler =
  & ((request: LlmRequest, signal: AbortSignal, timeoutMs: number) => Promise<LlmResponse>)
  & {
    /** Whether the client's sampling takes tools (`sampling.tools`), as an `agent` task needs. */
    readonly tools: boolean;
  };

export interface SamplerOptions {
  /**
   * The client request a sampling request belongs to, so it travels on that request's own stream
   * (a `tools/call` POST, or a `tasks/result` waiting on a task) rather than the standalone GET
   * stream a client may not hold open. Asked at each call: a task's waiting request changes. It may
   * wait for one (until `signal` aborts: the wait counts against the sampling request's timeout).
   */
  relatedRequest?: (signal: AbortSignal) => RequestId | undefined | Promise<RequestId | undefined>;
  /** Told +1 when a sampling request goes out and -1 when it is answered (or fails). */
  onPending?: (delta: 1 | -1) => void;
}

const SAMPLING_MODEL = "client-sampling";

type Content = Record<string, unknown> & { type: string };

export const CLIENT_GONE_MESSAGE =
  "Cannot ask the client's model (MCP sampling): the client that started this task has " +
  "disconnected. Tasks outlive their assistant, its model does not: set KLYM_MODEL=provider:model " +
  "so such tasks use a model of their own, or start the task again from a connected client";

/** A sampler for the client of `server`, or `undefined` when that client does not sample. */
export function samplerFor(server: McpServer, options: SamplerOptions = {}): Sampler | undefined {
  const caps = server.server.getClientCapabilities();
  if (!caps?.sampling) return undefined;
  const withTools = Boolean((caps.sampling as { tools?: unknown }).tools);
  const sample = async (request: LlmRequest, signal: AbortSignal, timeoutMs: number) => {
    const params = samplingParams(request, withTools);
    // Tasks outlive their client's session; the client's model does not.
    if (!server.isConnected()) throw new KlymError("client_gone", CLIENT_GONE_MESSAGE);
    options.onPending?.(1);
    const asked = Date.now();
    let result;
    try {
      const relatedRequestId = await relatedRequest(options, signal, timeoutMs);
      result = await server.server.createMessage(params as never, {
        signal,
        timeout: Math.max(1, timeoutMs - (Date.now() - asked)),
        ...(relatedRequestId === undefined ? {} : { relatedRequestId }),
      });
    } catch (error) {
      if (server.isConnected() || signal.aborted) throw error;
      throw new KlymError("client_gone", CLIENT_GONE_MESSAGE, { cause: error });
    } finally {
      options.onPending?.(-1);
    }
    return fromSamplingResult(result);
  };
  return Object.assign(sample, { tools: withTools });
}

/** The request to send a sampling request with, waited for within `timeoutMs`. */
async function relatedRequest(
  options: SamplerOptions,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<RequestId | undefined> {
  if (!options.relatedRequest) return undefined;
  using wait = linkedAbort([signal], timeoutMs);
  try {
    return await options.relatedRequest(wait.signal);
  } catch (error) {
    if (!wait.timedOut) throw error;
    throw new KlymError(
      "model_error",
      `The client did not send tasks/result for this task within ${timeoutMs} ms: a 2025-11-25 client receives a task's sampling requests on tasks/result, which it should send when the task is input_required`,
    );
  }
}

/**
 * A sampler for a 2026-07-28 client, which takes no server-to-client requests: each request is
 * handed to `ask` (which parks it for the client to answer through `tasks/update`) and the
 * client's answer is checked as any sampling result. `undefined` when the client's request
 * capabilities declare no `sampling`.
 */
export function askingSampler(
  sampling: unknown,
  ask: (
    params: Record<string, unknown>,
    signal: AbortSignal,
    timeoutMs: number,
  ) => Promise<unknown>,
): Sampler | undefined {
  if (!sampling || typeof sampling !== "object") return undefined;
  const withTools = Boolean((sampling as { tools?: unknown }).tools);
  const sample = async (request: LlmRequest, signal: AbortSignal, timeoutMs: number) =>
    fromSamplingResult(await ask(samplingParams(request, withTools), signal, timeoutMs));
  return Object.assign(sample, { tools: withTools });
}

/**
 * The `sampling/createMessage` params for `request`; throws when it needs tools and the client's
 * sampling takes none.
 */
function samplingParams(request: LlmRequest, withTools: boolean): Record<string, unknown> {
  if (request.tools?.length && !withTools) {
    throw new Error(
      "The client's sampling does not support tools (sampling.tools); configure KLYM_MODEL",
    );
  }
  return {
    messages: request.messages.map(toSamplingMessage),
    maxTokens: request.maxTokens ?? DEFAULT_MAX_TOKENS,
    ...(request.system ? { systemPrompt: request.system } : {}),
    ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
    ...(request.tools?.length
      ? {
        tools: request.tools.map((t) => ({
          name: t.name,
          ...(t.description ? { description: t.description } : {}),
          inputSchema: { type: "object", ...t.inputSchema },
        })),
      }
      : {}),
  };
}

const SamplingResult = z.object({
  model: z.string({ error: '"model" must be a string' }).max(200),
  stopReason: z.string().max(100).optional(),
  content: z.union([
    z.object({ type: z.string() }).passthrough(),
    z.array(z.object({ type: z.string() }).passthrough()).max(1000),
  ], { error: '"content" must be a content block or an array of them' }),
}).passthrough();

/**
 * A client's `sampling/createMessage` result as Klym's model response. The result comes from the
 * client: anything not of the result's shape is refused with what is wrong.
 */
function fromSamplingResult(raw: unknown): LlmResponse {
  const parsed = SamplingResult.safeParse(raw);
  if (!parsed.success) {
    throw new Error(
      `The client's sampling result is not a CreateMessageResult: ${
        parsed.error.issues.map((i) => `${i.path.join(".") || "result"}: ${i.message}`).join("; ")
      }`,
    );
  }
  const result = parsed.data;
  const content = (Array.isArray(result.content) ? result.content : [result.content]) as Content[];
  return {
    model: `${SAMPLING_MODEL}:${result.model}`,
    text: content.filter((c) => c.type === "text").map((c) => String(c.text ?? "")).join(""),
    toolCalls: content.filter((c) => c.type === "tool_use").map((c) => ({
      id: String(c.id),
      name: String(c.name),
      args: c.input,
    })),
    usage: { inputTokens: 0, outputTokens: 0 },
    finishReason: String(result.stopReason ?? "unknown"),
  };
}

function toSamplingMessage(m: LlmRequest["messages"][number]) {
  switch (m.role) {
    case "user":
      return { role: "user", content: { type: "text", text: m.text } };
    case "assistant":
      return {
        role: "assistant",
        content: [
          ...(m.text ? [{ type: "text", text: m.text }] : []),
          ...m.toolCalls.map((c) => ({ type: "tool_use", id: c.id, name: c.name, input: c.args })),
        ],
      };
    case "tool":
      return {
        role: "user",
        content: m.results.map((r) => ({
          type: "tool_result",
          toolUseId: r.id,
          content: [{ type: "text", text: r.output }],
          ...(r.isError ? { isError: true } : {}),
        })),
      };
  }
}
