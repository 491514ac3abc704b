/**
 * A request answered at once gets its answer as one JSON object, not as an SSE stream. Streamable
 * HTTP lets the server pick either for each request (a client must take both); the SDK's transport
 * picks one for a whole session, and a Klym session needs streams for the calls that wait on a task
 * (`run_task`, `llm_generate`, `tasks/result`: progress, log lines and sampling requests travel on
 * the call's own stream). A stream costs an HTTP/1.1 client a connection per call (it stops reading
 * at the answer, before the stream's end, so the connection cannot be kept) and a parse of its
 * events: a quarter of a `check_task_status` through the Python SDK (docs/benchmarks.md).
 *
 * So the session's stream is read here until the answer, and the answer is passed on as JSON. Should
 * anything else come first (nothing Klym sends does, but the stream is the SDK's), or the answer be
 * large, the client gets the whole stream as it was written.
 */
import { linkedAbort } from "../abort.ts";
import type { Id } from "./responses.ts";

/** Methods whose handlers answer without sending anything on the request's stream first. */
const INSTANT_METHODS: ReadonlySet<string> = new Set([
  "initialize",
  "ping",
  "tools/list",
  "prompts/list",
  "resources/list",
  "resources/templates/list",
  "logging/setLevel",
  "completion/complete",
  "tasks/get",
  "tasks/list",
  "tasks/cancel",
]);

/** Tools that answer at once; `run_task` and `llm_generate` wait, and speak while they do. */
const INSTANT_TOOLS: ReadonlySet<string> = new Set([
  "start_async_agent_task",
  "check_task_status",
  "cancel_task",
  "list_tasks",
  "list_models",
]);

/**
 * Whether `body` is one request answered at once: an instant method or tool, without a progress
 * token (progress would travel on its stream) and not task-augmented.
 */
export function answersAtOnce(body: unknown): boolean {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return false;
  const { id, method, params } = body as { id?: unknown; method?: unknown; params?: unknown };
  if (typeof id !== "string" && typeof id !== "number") return false;
  const p = (typeof params === "object" && params !== null ? params : {}) as {
    name?: unknown;
    task?: unknown;
    _meta?: { progressToken?: unknown } | null;
  };
  if (p._meta?.progressToken !== undefined || p.task !== undefined) return false;
  if (method === "tools/call") return typeof p.name === "string" && INSTANT_TOOLS.has(p.name);
  return typeof method === "string" && INSTANT_METHODS.has(method);
}

/**
 * The stream's bytes read for a JSON answer, at most. A larger answer keeps its stream: its transfer
 * outweighs a connection, and reading it into a string and out again would leave garbage of several
 * times its size (a result of a megabyte).
 */
export const JSON_ANSWER_MAX_BYTES = 64 * 1024;

/**
 * How long an answer may take to come as JSON. Later, the stream is passed on as it is: its headers
 * and keep-alive comments reach the client, and a node forwarding the request (which waits
 * `KLYM_NODE_LEASE_MS`, 1 s at the least, for headers) gets them in time. An answer at once takes
 * well under a millisecond; one waiting on the journal (a start, a cancel) can take
 * `KLYM_SHARED_WAIT_MS`, and one the SDK drops (a request the client cancelled) never comes.
 */
export const JSON_ANSWER_WAIT_MS = 500;

type Read = ReadableStreamReadResult<Uint8Array>;

/**
 * `response` with its answer to request `id` as JSON when the answer is the stream's first message,
 * comes within `waitMs` and fits in `JSON_ANSWER_MAX_BYTES`; otherwise (not a stream, something else
 * first, a late or larger answer, or the stream ended unanswered) the same response. Once `signal`
 * aborts (the client went), the stream is cancelled, as the client's going would cancel it.
 */
export async function asJson(
  response: Response,
  id: Id,
  signal?: AbortSignal,
  waitMs = JSON_ANSWER_WAIT_MS,
): Promise<Response> {
  if (!response.body || !isEventStream(response)) return response;
  const reader = response.body.getReader();
  const events = new EventReader();
  const read: Uint8Array[] = [];
  let bytes = 0;
  using wait = linkedAbort(signal ? [signal] : [], waitMs);
  const stopped = new Promise<"stopped">((resolve) => {
    if (wait.signal.aborted) resolve("stopped");
    else wait.signal.addEventListener("abort", () => resolve("stopped"), { once: true });
  });
  while (true) {
    const next = reader.read();
    const got = await Promise.race([next, stopped]);
    if (got === "stopped") {
      if (wait.timedOut) return replayed(response, read, reader, next);
      await reader.cancel(); // the client went
      return replayed(response, read, reader);
    }
    if (got.done) break;
    read.push(got.value);
    bytes += got.value.byteLength;
    if (bytes > JSON_ANSWER_MAX_BYTES) return replayed(response, read, reader);
    for (const data of events.push(got.value)) {
      if (data === "") continue; // a priming event, or a comment
      if (!isAnswerTo(data, id)) return replayed(response, read, reader);
      await reader.cancel();
      const headers = new Headers({ "content-type": "application/json" });
      const session = response.headers.get("mcp-session-id");
      if (session) headers.set("mcp-session-id", session);
      return new Response(data, { status: response.status, headers });
    }
  }
  return replayed(response, read, reader);
}

function isEventStream(response: Response): boolean {
  const type = response.headers.get("content-type") ?? "";
  return type.split(";")[0]!.trim() === "text/event-stream";
}

function isAnswerTo(data: string, id: Id): boolean {
  try {
    const message = JSON.parse(data);
    return typeof message === "object" && message !== null && message.id === id &&
      ("result" in message || "error" in message);
  } catch {
    return false;
  }
}

/** The stream as written: the chunks already read, a read under way, then the rest. */
function replayed(
  response: Response,
  read: Uint8Array[],
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pending?: Promise<Read>,
): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of read) controller.enqueue(chunk);
    },
    async pull(controller) {
      const { done, value } = await (pending ?? reader.read());
      pending = undefined;
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return new Response(body, { status: response.status, headers: response.headers });
}

/** SSE events out of a byte stream: the data of each whole event (lines joined), in order. */
class EventReader {
  #decoder = new TextDecoder();
  #pending = "";

  push(chunk: Uint8Array): string[] {
    const text = this.#pending + this.#decoder.decode(chunk, { stream: true });
    this.#pending = text.replaceAll("\r\n", "\n");
    const blocks = this.#pending.split("\n\n");
    this.#pending = blocks.pop()!;
    return blocks.map((block) =>
      block.split("\n")
        .filter((line) => line === "data" || line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n")
    );
  }
}
