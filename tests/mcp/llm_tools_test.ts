/**
 * `llm_generate` as an MCP task: a task-augmented call (2025-11-25) or a request declaring the
 * Tasks extension (2026-07-28) starts a registry task of kind `generate`, which every face sees,
 * and its result is `llm_generate`'s own answer.
 */
import assert from "node:assert/strict";
import { call, startKlym } from "../helpers/klym_process.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";
import { ModernMcp, parseSse, RawMcp, type RpcMessage } from "../helpers/raw_mcp.ts";
import { startScriptedModel, textOf } from "../helpers/scripted_openai.ts";

type Json = Record<string, unknown>;

Deno.test("llm_generate runs as a task of kind generate, in both eras", async () => {
  await using model = startScriptedModel((request) => ({
    text: `echo: ${textOf(request.messages.at(-1)!)}`,
  }));
  await using klym = await startKlym({
    KLYM_MODEL: "openai-compatible:scripted",
    KLYM_OPENAI_COMPATIBLE_URL: model.baseUrl,
    KLYM_LLM_RETRIES: "0",
  });

  const raw = new RawMcp(klym.url);
  await raw.initialize();
  const tools = (await raw.request("tools/list")).result!.tools as {
    name: string;
    execution?: Json;
  }[];
  assert.deepEqual(tools.find((t) => t.name === "llm_generate")?.execution, {
    taskSupport: "optional",
  });

  const created = await raw.request("tools/call", {
    name: "llm_generate",
    arguments: { prompt: "hello there", max_tokens: 50, system: "be brief" },
    task: { ttl: 60_000 },
  });
  const task = created.result!.task as { taskId: string; status: string };
  assert.equal(task.status, "working");
  const answer = await raw.request("tasks/result", { taskId: task.taskId });
  const structured = answer.result!.structuredContent as Json;
  assert.equal(structured.text, "echo: hello there");
  assert.equal(structured.model, "openai-compatible:scripted");
  assert.ok(typeof (structured.usage as Json).input_tokens === "number");
  const meta = answer.result!._meta as Record<string, { taskId: string }>;
  assert.equal(meta["io.modelcontextprotocol/related-task"]!.taskId, task.taskId);
  // The model was asked what the call asked.
  const sent = model.requests.at(-1)!;
  assert.equal(textOf(sent.messages[0]!), "be brief");

  // A registry task like any other.
  const client = await klym.connect("http");
  const status = await call<Json>(client, "check_task_status", { task_id: task.taskId });
  assert.equal(status.kind, "generate");
  assert.equal(status.status, "succeeded");
  const listed = await call<{ tasks: { task_id: string; kind: string }[] }>(
    client,
    "list_tasks",
    {},
  );
  assert.equal(listed.tasks.find((t) => t.task_id === task.taskId)?.kind, "generate");

  // Invalid input is refused as a plain call would refuse it, naming the field.
  const refused = await raw.request("tools/call", {
    name: "llm_generate",
    arguments: { prompt: "x", temperature: 7 },
    task: {},
  });
  assert.equal(refused.result!.isError, true);
  assert.match(JSON.stringify(refused.result!.content), /temperature/);

  // 2026-07-28 with the Tasks extension: the same, the result inline in tasks/get.
  const modern = new ModernMcp(klym.url);
  const started = await modern.request("tools/call", {
    name: "llm_generate",
    arguments: { prompt: "modern times" },
  });
  assert.equal(started.resultType, "task");
  const deadline = Date.now() + 30_000;
  let got: Json;
  do {
    got = await modern.request("tasks/get", { taskId: started.taskId });
  } while (got.status === "working" && Date.now() < deadline);
  assert.equal(got.status, "completed");
  assert.equal(((got.result as Json).structuredContent as Json).text, "echo: modern times");
  await raw.close();
});

Deno.test("a 2026-07-28 llm_generate asks the client's own model with an input-required result", async () => {
  await using klym = await startKlym();
  const mcp = new ModernMcp(klym.url, { sampling: {} });
  const args = { name: "llm_generate", arguments: { prompt: "2+2?", max_tokens: 20 } };

  const first = await mcp.request("tools/call", args);
  assert.equal(first.resultType, "input_required");
  const requests = first.inputRequests as Record<string, { method: string; params: Json }>;
  const [key] = Object.keys(requests);
  assert.equal(requests[key!]!.method, "sampling/createMessage");
  assert.equal(requests[key!]!.params.maxTokens, 20);

  const second = await mcp.request("tools/call", {
    ...args,
    inputResponses: {
      [key!]: {
        role: "assistant",
        content: { type: "text", text: "4" },
        model: "m",
        stopReason: "endTurn",
      },
    },
  });
  assert.equal(second.resultType, "complete");
  assert.equal((second.structuredContent as Json).text, "4");
  assert.equal((second.structuredContent as Json).model, "client-sampling:m");

  // An answer that is no sampling result is refused, saying what is wrong.
  const bad = await mcp.request("tools/call", {
    ...args,
    inputResponses: { [key!]: { role: "assistant", content: { type: "text", text: "4" } } },
  });
  assert.equal(bad.isError, true);
  assert.match(JSON.stringify(bad.content), /not a CreateMessageResult: model/);

  // An answer of another kind (an elicitation result) is refused, naming it.
  const elicited = await mcp.request("tools/call", {
    ...args,
    inputResponses: { [key!]: { action: "accept", content: { answer: "4" } } },
  });
  assert.equal(elicited.isError, true);
  assert.match(JSON.stringify(elicited.content), /an elicitation result, not a sampling result/);

  // Garbage is refused too.
  const garbage = await mcp.request("tools/call", {
    ...args,
    inputResponses: { [key!]: { nonsense: true } },
  });
  assert.equal(garbage.isError, true);
  assert.match(JSON.stringify(garbage.content), /no sampling result/);

  // A request whose envelope declares no sampling cannot be asked: -32021 from the SDK.
  const { message } = await new ModernMcp(klym.url, {}).send("tools/call", args);
  assert.equal(message.error?.code, -32021);
  assert.match(JSON.stringify(message.error), /sampling/);
});

Deno.test("a generate task on the client's sampling is input_required while the client is asked", async () => {
  await using klym = await startKlym();
  const mcp = new RawMcp(klym.url);
  await mcp.initialize({ sampling: {} });
  const created = await mcp.request("tools/call", {
    name: "llm_generate",
    arguments: { prompt: "say hi", max_tokens: 30 },
    task: { ttl: 60_000 },
  });
  const { taskId } = created.result!.task as { taskId: string };

  // The task asks before the client sends tasks/result (no stream carries the request yet): it is
  // input_required, and the request waits for the stream the client opens on seeing that.
  const deadline = Date.now() + PATIENCE_MS;
  while ((await mcp.request("tasks/get", { taskId })).result!.status !== "input_required") {
    assert.ok(Date.now() < deadline, "the task became input_required");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }

  // tasks/result waits on the task; the sampling request travels on its stream.
  const res = await mcp.post({ id: 900, method: "tasks/result", params: { taskId } });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let asked: RpcMessage | undefined;
  let final: RpcMessage | undefined;
  try {
    while (!final) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      const messages = parseSse(text).filter((e) => e.data).map((e) =>
        JSON.parse(e.data) as RpcMessage
      );
      final = messages.find((m) => m.id === 900 && m.method === undefined);
      const request = messages.find((m) => m.method === "sampling/createMessage");
      if (request && !asked) {
        asked = request;
        assert.equal(request.params!.maxTokens, 30);
        // While the client has not answered, the task waits on it.
        const got = await mcp.request("tasks/get", { taskId });
        assert.equal(got.result!.status, "input_required");
        const reply = await mcp.post({
          id: request.id,
          result: { role: "assistant", content: { type: "text", text: "hi!" }, model: "m1" },
        });
        await reply.body?.cancel();
      }
    }
  } finally {
    await reader.cancel();
  }
  assert.ok(asked, `a sampling request arrived on the tasks/result stream: ${text}`);
  const structured = final!.result!.structuredContent as Json;
  assert.equal(structured.text, "hi!");
  assert.equal(structured.model, "client-sampling:m1");
  const done = await mcp.request("tasks/get", { taskId });
  assert.equal(done.result!.status, "completed");
  await mcp.close();
});
