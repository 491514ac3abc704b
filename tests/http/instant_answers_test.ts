import assert from "node:assert/strict";
import { answersAtOnce, asJson, JSON_ANSWER_MAX_BYTES } from "../../src/http/instant_answers.ts";

const SSE = { "content-type": "text/event-stream", "mcp-session-id": "s-1" };

/** A response whose body arrives in `chunks`, as the SDK's transport writes it. */
function stream(chunks: string[], headers: Record<string, string> = SSE): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
  return new Response(body, { headers });
}

const priming = "id: a|1\nretry: 1000\ndata: \n\n";
const answer = (id: number | string) =>
  `event: message\nid: a|2\ndata: ${JSON.stringify({ result: { ok: 1 }, jsonrpc: "2.0", id })}\n\n`;

Deno.test("instant methods and tools answer at once; calls that wait, progress tokens and task augmentation do not", () => {
  const call = (name: string, extra: Record<string, unknown> = {}) => ({
    jsonrpc: "2.0",
    id: 1,
    method: "tools/call",
    params: { name, arguments: {}, ...extra },
  });
  assert.equal(answersAtOnce(call("check_task_status")), true);
  assert.equal(answersAtOnce(call("start_async_agent_task")), true);
  assert.equal(answersAtOnce({ jsonrpc: "2.0", id: "x", method: "tasks/get", params: {} }), true);
  assert.equal(answersAtOnce({ jsonrpc: "2.0", id: 2, method: "ping" }), true);
  assert.equal(answersAtOnce(call("run_task")), false);
  assert.equal(answersAtOnce(call("llm_generate")), false);
  assert.equal(answersAtOnce({ jsonrpc: "2.0", id: 3, method: "tasks/result", params: {} }), false);
  assert.equal(answersAtOnce(call("check_task_status", { _meta: { progressToken: 0 } })), false);
  assert.equal(answersAtOnce(call("start_async_agent_task", { task: {} })), false);
  // Not one request: a notification, a batch, a body that is not JSON-RPC.
  assert.equal(answersAtOnce({ jsonrpc: "2.0", method: "ping" }), false);
  assert.equal(answersAtOnce([{ jsonrpc: "2.0", id: 1, method: "ping" }]), false);
  assert.equal(answersAtOnce(null), false);
  assert.equal(answersAtOnce({ id: 1, method: "tools/call", params: null }), false);
});

Deno.test("an answer that is the stream's first message is passed on as JSON with the session id", async () => {
  const res = await asJson(stream([priming, answer(7)]), 7);
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.equal(res.headers.get("mcp-session-id"), "s-1");
  assert.deepEqual(await res.json(), { result: { ok: 1 }, jsonrpc: "2.0", id: 7 });
});

Deno.test("an answer split across chunks, with CRLF line ends and data on several lines, is read whole", async () => {
  const message = answer("q").replaceAll("\n", "\r\n");
  const cut = message.indexOf("result");
  const multi = 'data: {"jsonrpc":"2.0",\r\ndata: "id":"q","error":{"code":1}}\r\n\r\n';
  const split = await asJson(stream([priming, message.slice(0, cut), message.slice(cut)]), "q");
  assert.equal((await split.json()).id, "q");
  const lines = await asJson(stream([priming.slice(0, 5), priming.slice(5), multi]), "q");
  assert.deepEqual(await lines.json(), { jsonrpc: "2.0", id: "q", error: { code: 1 } });
});

Deno.test("anything but the answer first, or no answer at all, leaves the stream as it was written", async () => {
  const notice = `event: message\ndata: ${
    JSON.stringify({ jsonrpc: "2.0", method: "notifications/progress", params: {} })
  }\n\n`;
  for (
    const chunks of [
      [priming, notice, answer(7)],
      [priming, answer(8)], // another request's answer
      [priming, "data: not json\n\n", answer(7)],
      [priming], // ended unanswered
    ]
  ) {
    const res = await asJson(stream(chunks), 7);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    assert.equal(res.headers.get("mcp-session-id"), "s-1");
    assert.equal(await res.text(), chunks.join(""));
  }
});

Deno.test("a response that is not a stream is passed on untouched", async () => {
  const json = stream(['{"jsonrpc":"2.0","id":1,"error":{"code":-32001}}'], {
    "content-type": "application/json",
  });
  const res = await asJson(json, 1);
  assert.equal(res, json);
  const accepted = new Response(null, { status: 202 });
  assert.equal(await asJson(accepted, 1), accepted);
});

Deno.test("an answer whose stream fits in JSON_ANSWER_MAX_BYTES is JSON; one byte more keeps the stream", async () => {
  const sized = (total: number) => {
    const frame = answer(9).length - '{"ok":1}'.length + '{"pad":""}'.length;
    const pad = "x".repeat(total - priming.length - frame);
    const event = `event: message\nid: a|2\ndata: ${
      JSON.stringify({ result: { pad }, jsonrpc: "2.0", id: 9 })
    }\n\n`;
    assert.equal(priming.length + event.length, total);
    return [priming, event];
  };
  const fits = await asJson(stream(sized(JSON_ANSWER_MAX_BYTES)), 9);
  assert.equal(fits.headers.get("content-type"), "application/json");
  assert.equal((await fits.json()).id, 9);
  const over = sized(JSON_ANSWER_MAX_BYTES + 1);
  const kept = await asJson(stream(over), 9);
  assert.equal(kept.headers.get("content-type"), "text/event-stream");
  assert.equal(await kept.text(), over.join(""));
});

/** A stream that has sent `first` and waits for `rest` (or for its reader to cancel it). */
function waiting(first: string[]) {
  const encoder = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const cancelled = Promise.withResolvers<void>();
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      for (const chunk of first) c.enqueue(encoder.encode(chunk));
    },
    cancel: () => cancelled.resolve(),
  });
  return {
    response: new Response(body, { headers: SSE }),
    send: (chunk: string) => controller.enqueue(encoder.encode(chunk)),
    end: () => controller.close(),
    cancelled: cancelled.promise,
  };
}

Deno.test("an answer later than the wait keeps the stream, and the read under way is not lost", async () => {
  const source = waiting([priming]);
  const res = await asJson(source.response, 7, undefined, 0);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  source.send(answer(7));
  source.end();
  assert.equal(await res.text(), priming + answer(7));
});

Deno.test("a client that goes while the answer is awaited cancels the stream, as it would have", async () => {
  const source = waiting([priming]);
  const client = new AbortController();
  const asked = asJson(source.response, 7, client.signal, 60_000);
  client.abort();
  await source.cancelled;
  const res = await asked;
  assert.equal(await res.text(), priming);
  // Gone before it began: the same.
  const early = waiting([priming]);
  await asJson(early.response, 7, AbortSignal.abort(), 60_000);
  await early.cancelled;
});
