/** The Worker's requests to its host in-process: answers, and the two signals that abort a call. */
import assert from "node:assert/strict";
import { HostLink } from "../../src/worker/host_link.ts";
import type { LlmResponse, WorkerEvent } from "../../src/protocol.ts";

const request = { messages: [{ role: "user" as const, text: "hi" }] };
const response: LlmResponse = {
  model: "m",
  text: "hello",
  toolCalls: [],
  usage: { inputTokens: 1, outputTokens: 1 },
  finishReason: "stop",
};

function link(task = new AbortController()) {
  const posted: WorkerEvent[] = [];
  return { host: new HostLink((event) => posted.push(event), task.signal), posted, task };
}

Deno.test("a model call with its own signal is answered by the host", async () => {
  const { host, posted } = link();
  const own = new AbortController();
  const call = host.generate(request, { signal: own.signal });
  assert.deepEqual(posted, [{ type: "llm_request", id: 1, request }]);
  host.settle({ type: "llm_response", id: 1, response });
  assert.deepEqual(await call, response);
  // Settled: aborting its signal now cancels nothing.
  own.abort();
  assert.equal(posted.length, 1);
});

Deno.test("a model call's own signal rejects it at once and cancels it in the server", async () => {
  const { host, posted } = link();
  const own = new AbortController();
  const call = host.generate(request, { signal: own.signal });
  own.abort(new Error("changed my mind"));
  await assert.rejects(call, /changed my mind/);
  assert.deepEqual(posted.at(-1), { type: "llm_cancel", id: 1 });
  // A late answer for the cancelled call is ignored.
  host.settle({ type: "llm_response", id: 1, response });
});

Deno.test("the task's signal rejects a model call that has its own signal too", async () => {
  const { host, posted, task } = link();
  const call = host.generate(request, { signal: new AbortController().signal });
  task.abort(new Error("task cancelled"));
  await assert.rejects(call, /task cancelled/);
  assert.deepEqual(posted.at(-1), { type: "llm_cancel", id: 1 });
});

Deno.test("a call whose signal is already aborted never reaches the host", async () => {
  const { host, posted } = link();
  await assert.rejects(
    host.generate(request, { signal: AbortSignal.abort(new Error("too late")) }),
    /too late/,
  );
  assert.deepEqual(posted, []);
});
