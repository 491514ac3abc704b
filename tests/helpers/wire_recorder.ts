/**
 * A loopback HTTP proxy in front of a real Klym that records what went over the wire: each
 * JSON-RPC request a client sent (method, id, params, the `Mcp-*` headers), its HTTP status and
 * its answer (result or error, and the kind of result: a task created, input required, a complete
 * answer), and the server's messages on the request's stream (notifications, server requests).
 * Bodies and SSE streams pass through unchanged; a message is recorded before the client can read
 * it, so once a client has seen an answer the record holds it.
 *
 *   await using wire = await startWireRecorder(klym.url);
 *   // point the client at wire.url, then:
 *   wire.requests("tasks/get", taskId)
 */

type Json = Record<string, unknown>;

/**
 * What a result says it is: `task` (a `CreateTaskResult`: 2025's `{ task }` or 2026's
 * `resultType: "task"`), `input_required`, `complete` (any other result), `error` (a JSON-RPC
 * error), or `accepted` (a notification or a client's response, answered 202 with no body).
 */
export type ResultKind = "task" | "input_required" | "complete" | "error" | "accepted";

export interface WireExchange {
  readonly method: string;
  /** Absent for a notification. */
  readonly id?: string | number;
  readonly params: Json;
  /** The request's `Mcp-Name`, `Mcp-Method` and `Mcp-Protocol-Version` headers, when sent. */
  readonly mcpName: string | undefined;
  readonly mcpMethod: string | undefined;
  readonly protocolVersion: string | undefined;
  /** The HTTP status of the POST that carried it. */
  status?: number;
  kind?: ResultKind;
  result?: Json;
  error?: { code: number; message: string; data?: unknown };
  /** The server's notifications and requests on this request's stream, in order. */
  readonly serverMessages: Json[];
}

export interface WireRecorder extends AsyncDisposable {
  /** The proxy's base URL: a client connects to `${url}/mcp` as it would to Klym's. */
  readonly url: string;
  /** Every client request and notification so far, in the order they were sent. */
  readonly exchanges: readonly WireExchange[];
  /** The requests of `method`, those naming `taskId` (params.taskId) when it is given. */
  requests(method: string, taskId?: string): WireExchange[];
  /** Resolves with the first exchange `test` accepts, now or when one is recorded. */
  waitFor(test: (exchange: WireExchange) => boolean, timeoutMs?: number): Promise<WireExchange>;
}

/** The task a `CreateTaskResult` created (2025: `result.task.taskId`; 2026: `result.taskId`). */
export function createdTaskId(exchange: WireExchange): string | undefined {
  if (exchange.kind !== "task") return undefined;
  const task = (exchange.result?.task ?? exchange.result) as Json | undefined;
  return typeof task?.taskId === "string" ? task.taskId : undefined;
}

/** The status a `tasks/get` or `tasks/cancel` answered (2025 flat, 2026 flat or under `task`). */
export function answeredStatus(exchange: WireExchange): string | undefined {
  const task = (exchange.result?.task ?? exchange.result) as Json | undefined;
  return typeof task?.status === "string" ? task.status : undefined;
}

function resultKind(message: Json): ResultKind {
  if (message.error) return "error";
  const result = (message.result ?? {}) as Json;
  if (result.resultType === "task") return "task";
  if (result.resultType === "input_required") return "input_required";
  const task = result.task as Json | undefined;
  if (task && typeof task === "object" && typeof task.taskId === "string") return "task";
  return "complete";
}

// Hop-by-hop headers, and the ones fetch recomputes or would make us decode.
const DROPPED_REQUEST_HEADERS = ["host", "connection", "content-length", "accept-encoding"];
const DROPPED_RESPONSE_HEADERS = ["connection", "content-length", "content-encoding"];

export async function startWireRecorder(target: string): Promise<WireRecorder> {
  const exchanges: WireExchange[] = [];
  // Requests awaiting an answer, by session and id: a 2025 answer may come on another stream.
  const pending = new Map<string, WireExchange>();
  const waiters = new Set<() => void>();
  const upstreams = new Set<AbortController>();
  const openStreams = new Set<() => void>();
  const changed = () => {
    for (const check of [...waiters]) check();
  };

  const settle = (exchange: WireExchange, message: Json) => {
    exchange.kind = resultKind(message);
    if (message.error) exchange.error = message.error as NonNullable<WireExchange["error"]>;
    else exchange.result = (message.result ?? {}) as Json;
  };

  /** Records one message the server sent; `local` are the requests of the POST it answers. */
  const onServerMessage = (message: Json, session: string, local: WireExchange[]) => {
    const isAnswer = "result" in message || "error" in message;
    if (isAnswer && message.id !== undefined && message.id !== null) {
      const key = `${session}|${String(message.id)}`;
      const exchange = local.find((e) => e.id === message.id && e.kind === undefined) ??
        pending.get(key);
      if (exchange) {
        pending.delete(key);
        settle(exchange, message);
      }
    } else {
      (local[0] ?? exchanges.at(-1))?.serverMessages.push(message);
    }
    changed();
  };

  /** Passes an SSE body through, recording each event's message before it moves on. */
  const recordingStream = (session: string, local: WireExchange[]) => {
    const decoder = new TextDecoder();
    let buffer = "";
    const flushEvents = (final: boolean) => {
      buffer = buffer.replaceAll("\r\n", "\n");
      const blocks = buffer.split("\n\n");
      buffer = final ? "" : blocks.pop()!;
      for (const block of blocks) {
        const data = block.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(l.startsWith("data: ") ? 6 : 5)).join("\n");
        if (!data) continue;
        try {
          onServerMessage(JSON.parse(data), session, local);
        } catch {
          // Not JSON: passed on unrecorded.
        }
      }
    };
    return new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        buffer += decoder.decode(chunk, { stream: true });
        flushEvents(false);
        controller.enqueue(chunk);
      },
      flush() {
        flushEvents(true);
      },
    });
  };

  const handle = async (req: Request): Promise<Response> => {
    const incoming = new URL(req.url);
    const headers = new Headers(req.headers);
    for (const name of DROPPED_REQUEST_HEADERS) headers.delete(name);
    const body = req.method === "POST" ? await req.text() : null;
    const session = req.headers.get("mcp-session-id") ?? "";

    const local: WireExchange[] = [];
    if (body) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = undefined;
      }
      for (const message of (Array.isArray(parsed) ? parsed : [parsed]) as Json[]) {
        if (!message || typeof message !== "object" || typeof message.method !== "string") continue;
        const exchange: WireExchange = {
          method: message.method,
          ...(message.id !== undefined && message.id !== null
            ? { id: message.id as string | number }
            : {}),
          params: (message.params ?? {}) as Json,
          mcpName: req.headers.get("mcp-name") ?? undefined,
          mcpMethod: req.headers.get("mcp-method") ?? undefined,
          protocolVersion: req.headers.get("mcp-protocol-version") ?? undefined,
          serverMessages: [],
        };
        exchanges.push(exchange);
        local.push(exchange);
        if (exchange.id !== undefined) pending.set(`${session}|${String(exchange.id)}`, exchange);
      }
      changed();
    }

    const upstream = new AbortController();
    upstreams.add(upstream);
    let res: Response;
    try {
      res = await fetch(`${target}${incoming.pathname}${incoming.search}`, {
        method: req.method,
        headers,
        body,
        signal: upstream.signal,
      });
    } catch (error) {
      upstreams.delete(upstream);
      return new Response(`Wire recorder: the server did not answer: ${error}`, { status: 502 });
    }
    for (const exchange of local) exchange.status = res.status;
    const outHeaders = new Headers(res.headers);
    for (const name of DROPPED_RESPONSE_HEADERS) outHeaders.delete(name);
    const answered = res.headers.get("mcp-session-id") ?? session;
    const type = res.headers.get("content-type") ?? "";

    if (!res.body || res.status === 202) {
      for (const exchange of local) if (exchange.id === undefined) exchange.kind = "accepted";
      await res.body?.cancel();
      upstreams.delete(upstream);
      changed();
      return new Response(null, { status: res.status, headers: outHeaders });
    }
    if (type.includes("text/event-stream")) {
      // Ends when the server ends it, the client lets go of it, or the recorder stops.
      const reader = res.body.pipeThrough(recordingStream(answered, local)).getReader();
      let end = () => {};
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          end = () => {
            openStreams.delete(end);
            reader.cancel().catch(() => {});
            try {
              controller.close();
            } catch {
              // Already closed.
            }
          };
          openStreams.add(end);
        },
        async pull(controller) {
          const { value, done } = await reader.read().catch(() => ({
            value: undefined,
            done: true,
          }));
          if (done) end();
          else controller.enqueue(value);
        },
        cancel() {
          end();
        },
      });
      return new Response(stream, { status: res.status, headers: outHeaders });
    }
    const text = await res.text();
    upstreams.delete(upstream);
    try {
      const parsed = JSON.parse(text);
      for (const message of (Array.isArray(parsed) ? parsed : [parsed]) as Json[]) {
        onServerMessage(message, answered, local);
      }
    } catch {
      // Not JSON (a plain-text refusal): the status says enough.
    }
    return new Response(text, { status: res.status, headers: outHeaders });
  };

  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: resolve,
  }, handle);
  const addr = await listening;

  return {
    url: `http://127.0.0.1:${addr.port}`,
    exchanges,
    requests(method, taskId) {
      return exchanges.filter((e) =>
        e.method === method && (taskId === undefined || e.params.taskId === taskId)
      );
    },
    waitFor(test, timeoutMs = 30_000) {
      const found = exchanges.find(test);
      if (found) return Promise.resolve(found);
      const { promise, resolve, reject } = Promise.withResolvers<WireExchange>();
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(
          new Error(
            `No such exchange within ${timeoutMs} ms; seen: ${
              JSON.stringify(exchanges.map((e) => [e.method, e.kind, e.params.taskId ?? ""]))
            }`,
          ),
        );
      }, timeoutMs);
      const check = () => {
        const hit = exchanges.find(test);
        if (!hit) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(hit);
      };
      waiters.add(check);
      return promise;
    },
    async [Symbol.asyncDispose]() {
      for (const end of [...openStreams]) end();
      for (const upstream of upstreams) upstream.abort();
      await server.shutdown();
    },
  };
}
