/**
 * A scripted OpenAI-compatible chat server on 127.0.0.1: the real `/v1/chat/completions` wire
 * format (with `tool_calls`), answering each request with whatever the test's script returns.
 */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string | null | { type: string; text?: string }[];
  tool_calls?: { id: string; type: "function"; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  tools?: {
    type: "function";
    function: { name: string; description?: string; parameters: unknown };
  }[];
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  stream?: boolean;
}

export type Reply =
  | { text: string }
  | { toolCalls: { name: string; args: unknown }[]; text?: string }
  | { status: number; body: unknown }
  | { hang: true };

export type Script = (request: ChatRequest, n: number) => Reply | Promise<Reply>;

export interface ScriptedModel extends AsyncDisposable {
  readonly baseUrl: string;
  readonly requests: ChatRequest[];
  /** Requests whose client went away before they were answered. */
  readonly aborted: () => number;
  /** The Authorization header of each request. */
  readonly authorizations: (string | null)[];
}

export function textOf(message: ChatMessage): string {
  if (typeof message.content === "string") return message.content;
  return (message.content ?? []).map((p) => p.text ?? "").join("");
}

export function startScriptedModel(script: Script): ScriptedModel {
  const requests: ChatRequest[] = [];
  const authorizations: (string | null)[] = [];
  let aborted = 0;
  const hanging = new Set<() => void>();
  let calls = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    if (req.method !== "POST" || url.pathname !== "/v1/chat/completions") {
      return Response.json({ error: { message: `no route ${url.pathname}` } }, { status: 404 });
    }
    const body = await req.json() as ChatRequest;
    requests.push(body);
    authorizations.push(req.headers.get("authorization"));
    const reply = await script(body, calls++);
    if ("hang" in reply) {
      return await new Promise<Response>((resolve) => {
        const end = () => resolve(new Response("gone", { status: 503 }));
        hanging.add(end);
        if (req.signal.aborted) aborted++;
        req.signal.addEventListener("abort", () => {
          aborted++;
          hanging.delete(end);
          end();
        });
      });
    }
    if ("status" in reply) return Response.json(reply.body, { status: reply.status });
    const toolCalls = "toolCalls" in reply
      ? reply.toolCalls.map((c, i) => ({
        id: `call_${calls}_${i}`,
        type: "function" as const,
        function: { name: c.name, arguments: JSON.stringify(c.args) },
      }))
      : undefined;
    const promptTokens = JSON.stringify(body.messages).length >> 2;
    const text = "text" in reply ? reply.text ?? null : null;
    return Response.json({
      id: `chatcmpl-${calls}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      choices: [{
        index: 0,
        message: {
          role: "assistant",
          content: text,
          ...(toolCalls ? { tool_calls: toolCalls } : {}),
        },
        finish_reason: toolCalls ? "tool_calls" : "stop",
      }],
      usage: {
        prompt_tokens: promptTokens,
        completion_tokens: 10,
        total_tokens: promptTokens + 10,
      },
    });
  });
  const addr = server.addr as Deno.NetAddr;
  return {
    baseUrl: `http://127.0.0.1:${addr.port}/v1`,
    requests,
    authorizations,
    aborted: () => aborted,
    async [Symbol.asyncDispose]() {
      for (const end of hanging) end();
      await server.shutdown();
    },
  };
}
