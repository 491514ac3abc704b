/**
 * The agent loop end to end: a scripted OpenAI-compatible model (the real chat-completions wire
 * format) drives Klym's agent against real graph servers.
 */
import assert from "node:assert/strict";
import {
  Client,
  SSEClientTransport,
  StreamableHTTPClientTransport,
} from "@modelcontextprotocol/client";
import {
  call,
  callError,
  type KlymProcess,
  ranMs,
  startKlym,
  waitFinal,
} from "./helpers/klym_process.ts";
import {
  type ChatRequest,
  type Script,
  type ScriptedModel,
  startScriptedModel,
  textOf,
} from "./helpers/scripted_openai.ts";
import { freePort, startFastMcpPeer, startMemoryPeer } from "./peers/peers.ts";
import { establishedTo } from "./helpers/tcp.ts";

const API_KEY = "sk-test-key-only-the-server-holds";

function modelEnv(model: ScriptedModel, extra: Record<string, string> = {}) {
  return {
    KLYM_MODEL: "openai-compatible:scripted",
    KLYM_OPENAI_COMPATIBLE_URL: model.baseUrl,
    KLYM_OPENAI_COMPATIBLE_KEY: API_KEY,
    KLYM_LLM_RETRIES: "0",
    ...extra,
  };
}

async function startAgent(
  klym: KlymProcess,
  prompt: string,
  params: Record<string, unknown> = {},
  timeout_s?: number,
) {
  const client = await klym.connect();
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    prompt,
    params,
    ...(timeout_s ? { timeout_s } : {}),
  });
  return { client, taskId: task_id };
}

const lastToolOutput = (request: ChatRequest) => {
  const tool = request.messages.findLast((m) => m.role === "tool");
  return tool ? textOf(tool) : "";
};

Deno.test("the agent creates entities, reads them back, saves progress and answers from what it read", async () => {
  await using graph = await startMemoryPeer({
    transport: "sse",
    memoryFile: Deno.makeTempFileSync({ suffix: ".jsonl" }),
  });
  const script: Script = (request, n) => {
    switch (n) {
      case 0:
        return {
          text: "I will record the city first.",
          toolCalls: [{
            name: "create_entities",
            args: {
              entities: [{
                name: "Kyiv",
                entityType: "city",
                observations: ["capital of Ukraine"],
              }],
            },
          }],
        };
      case 1:
        return { toolCalls: [{ name: "read_graph", args: {} }] };
      case 2: {
        const read = JSON.parse(lastToolOutput(request));
        const kyiv = read.entities.find((e: { name: string }) => e.name === "Kyiv");
        return {
          toolCalls: [{
            name: "save_progress",
            args: { text: `verified: ${kyiv.observations[0]}` },
          }],
        };
      }
      default: {
        const read = JSON.parse(textOf(request.messages.filter((m) => m.role === "tool")[1]!));
        const facts = read.entities.filter((e: { entityType: string }) => e.entityType === "city")
          .map((e: { name: string; observations: string[] }) =>
            `${e.name} is the ${e.observations[0]}`
          );
        return { text: `The graph says: ${facts.join("; ")}.` };
      }
    }
  };
  await using model = startScriptedModel(script);
  await using klym = await startKlym(modelEnv(model, { KLYM_GRYNYA_URL: graph.url }));
  const { client, taskId } = await startAgent(klym, "Record Kyiv and tell me what the graph says");
  const final = await waitFinal(client, taskId);
  assert.equal(final.status, "succeeded", JSON.stringify(final.error));
  const result = final.result as {
    answer: string;
    steps: number;
    graph_writes: { tools: string[] }[];
    usage: { inputTokens: number; outputTokens: number };
    model: string;
  };
  assert.equal(result.answer, "The graph says: Kyiv is the capital of Ukraine.");
  assert.equal(result.steps, 4);
  assert.deepEqual(result.graph_writes.map((w) => w.tools[0]), ["create_entities"]);
  assert.equal(result.model, "openai-compatible:scripted");
  assert.equal(result.usage.outputTokens, 40);
  assert.ok(result.usage.inputTokens > 0);

  const logs = final.allLogs.map((l) => l.text);
  assert.ok(logs.some((l) => /step 1: → create_entities\(\{"entities"/.test(l)), logs.join("\n"));
  assert.ok(
    logs.some((l) => /^step 1: model \([\d.]+ ms\): I will record the city first\.$/.test(l)),
  );
  assert.ok(logs.some((l) => /step 2: ← \([\d.]+ ms\) .*Kyiv/.test(l)));
  assert.ok(logs.some((l) => l === "step 4: final answer"));
  assert.match(final.progress!.message!, /done: final answer after 4 steps/);

  // What the model saw: grynya's tools plus Klym's own, and the conversation so far.
  const offered = model.requests[0]!.tools!.map((t) => t.function.name);
  for (const name of ["create_entities", "read_graph", "save_progress", "report_progress"]) {
    assert.ok(offered.includes(name), name);
  }
  assert.equal(model.requests.length, 4);
  assert.ok(
    model.authorizations.every((a) => a === `Bearer ${API_KEY}`),
    "the key is sent by the server",
  );

  const reader = new Client({ name: "reader", version: "1" });
  await reader.connect(new SSEClientTransport(new URL(graph.url)));
  const graphNow = await reader.callTool({ name: "read_graph", arguments: {} });
  await reader.close();
  const text = JSON.stringify(graphNow);
  assert.match(text, /Kyiv/);
  assert.match(text, new RegExp(`klym-task-${taskId}`));
  assert.match(text, /verified: capital of Ukraine/);
});

Deno.test("a wrong tool name and bad arguments go back to the model, which recovers", async () => {
  await using graph = await startFastMcpPeer();
  await using model = startScriptedModel((request, n) => {
    if (n === 0) return { toolCalls: [{ name: "drop_database", args: {} }] };
    if (n === 1) {
      assert.match(
        lastToolOutput(request),
        /There is no tool "drop_database"; the tools are: .*read_graph/,
      );
      return { toolCalls: [{ name: "create_entities", args: { entities: "not a list" } }] };
    }
    if (n === 2) {
      assert.match(lastToolOutput(request), /validation error|Input should be a valid list/i);
      return { text: "recovered" };
    }
    throw new Error("unexpected call");
  });
  await using klym = await startKlym(modelEnv(model, { KLYM_GRYNYA_URL: graph.url }));
  const { client, taskId } = await startAgent(klym, "try things");
  const final = await waitFinal(client, taskId);
  assert.equal(final.status, "succeeded", JSON.stringify(final.error));
  assert.equal((final.result as { answer: string }).answer, "recovered");
});

Deno.test("a save grynya refuses goes back to the model, and graph_writes lists its outcome", async () => {
  await using graph = await startFastMcpPeer();
  const template = {
    create: {
      tool: "add_observations",
      arguments: { observations: [{ entityName: "nobody", contents: ["{{text}}"] }] },
    },
  };
  await using model = startScriptedModel((request, n) => {
    if (n === 0) return { toolCalls: [{ name: "save_progress", args: { text: "a finding" } }] };
    if (n === 1) {
      assert.match(
        lastToolOutput(request),
        /grynya_write_rejected: .*refused save #1 .*Entity with name nobody not found/,
      );
      return { text: "noted that the save failed" };
    }
    throw new Error("unexpected call");
  });
  await using klym = await startKlym(
    modelEnv(model, { KLYM_GRYNYA_URL: graph.url, KLYM_GRYNYA_WRITE: JSON.stringify(template) }),
  );
  const { client, taskId } = await startAgent(klym, "save something");
  const final = await waitFinal(client, taskId);
  assert.equal(final.status, "succeeded", JSON.stringify(final.error));
  const writes = (final.result as { graph_writes: { ok: boolean; seq: number }[] }).graph_writes;
  assert.deepEqual(writes.map((w) => [w.seq, w.ok]), [[1, false]]);
});

Deno.test("a JSON-RPC error from grynya goes back to the model as a tool error", async () => {
  // A minimal Streamable HTTP MCP server (JSON responses, no session) written for this test: its
  // one tool answers every call with a JSON-RPC error, which no peer above does on demand.
  const grynya = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    if (req.method !== "POST") return new Response(null, { status: 405 });
    const msg = await req.json();
    if (!("id" in msg)) return new Response(null, { status: 202 });
    const answer = (body: Record<string, unknown>) =>
      Response.json({ jsonrpc: "2.0", id: msg.id, ...body });
    switch (msg.method) {
      case "initialize":
        return answer({
          result: {
            protocolVersion: msg.params.protocolVersion,
            capabilities: { tools: {} },
            serverInfo: { name: "jsonrpc-errors", version: "1" },
          },
        });
      case "tools/list":
        return answer({
          result: { tools: [{ name: "lookup", inputSchema: { type: "object", properties: {} } }] },
        });
      case "tools/call":
        return answer({ error: { code: -32602, message: "Unknown node id 7" } });
      default:
        return answer({ error: { code: -32601, message: "Method not found" } });
    }
  });
  try {
    await using model = startScriptedModel((request, n) => {
      if (n === 0) return { toolCalls: [{ name: "lookup", args: { id: 7 } }] };
      if (n === 1) {
        assert.match(
          lastToolOutput(request),
          /grynya_error: grynya at .* refused tools\/call lookup: .*Unknown node id 7 \(JSON-RPC error -32602\)/,
        );
        return { text: "node 7 does not exist" };
      }
      throw new Error("unexpected call");
    });
    await using klym = await startKlym(
      modelEnv(model, {
        KLYM_GRYNYA_URL: `http://127.0.0.1:${grynya.addr.port}/mcp`,
        KLYM_GRYNYA_TRANSPORT: "http",
      }),
    );
    const { client, taskId } = await startAgent(klym, "look up node 7");
    const final = await waitFinal(client, taskId);
    assert.equal(final.status, "succeeded", JSON.stringify(final.error));
    assert.equal((final.result as { answer: string }).answer, "node 7 does not exist");
  } finally {
    await grynya.shutdown();
  }
});

Deno.test("bounded failures: a repeated call is a loop, failing turns and max_steps stop the agent", async (t) => {
  await using graph = await startFastMcpPeer();
  const cases: [string, Script, Record<string, unknown>, string, RegExp][] = [
    [
      "loop",
      () => ({ toolCalls: [{ name: "read_graph", args: {} }] }),
      {},
      "loop_detected",
      /read_graph with the same arguments 3 times in a row; stopped at step 3/,
    ],
    [
      "failing turns",
      (_r, n) => ({ toolCalls: [{ name: `nope_${n}`, args: {} }] }),
      {},
      "tool_errors",
      /Every tool call failed in 3 model turns in a row/,
    ],
    [
      "token budget",
      (_r, n) => ({ toolCalls: [{ name: "report_progress", args: { done: n } }] }),
      { max_tokens: 1000 },
      "token_budget",
      /budget is 1000/,
    ],
    [
      "max steps",
      (_r, n) => ({ toolCalls: [{ name: "report_progress", args: { done: n } }] }),
      { max_steps: 2 },
      "max_steps",
      /Stopped after 2 steps without a final answer/,
    ],
  ];
  for (const [name, script, params, code, message] of cases) {
    await t.step(name, async () => {
      await using model = startScriptedModel(script);
      await using klym = await startKlym(modelEnv(model, { KLYM_GRYNYA_URL: graph.url }));
      const { client, taskId } = await startAgent(klym, "go", params);
      const final = await waitFinal(client, taskId);
      assert.equal(final.status, "failed");
      assert.equal(final.error?.code, code);
      assert.match(final.error!.message, message);
    });
  }
});

Deno.test("agent params are checked against their limits", async () => {
  await using graph = await startFastMcpPeer();
  await using model = startScriptedModel(() => ({ text: "ok" }));
  await using klym = await startKlym(
    modelEnv(model, { KLYM_GRYNYA_URL: graph.url, KLYM_AGENT_MAX_STEPS: "5" }),
  );
  // Budgets are the server's to enforce, so they are checked before the task exists.
  const client = await klym.connect();
  for (
    const [name, value, max, knob] of [
      ["max_steps", 6, 5, "KLYM_AGENT_MAX_STEPS"],
      ["max_tokens", 0, 500000, "KLYM_AGENT_MAX_TOKENS"],
      ["max_tokens", 1.5, 500000, "KLYM_AGENT_MAX_TOKENS"],
    ] as const
  ) {
    assert.match(
      await callError(client, "start_async_agent_task", {
        prompt: "go",
        params: { [name]: value },
      }),
      new RegExp(
        `INVALID_INPUT: .*"params.${name}" must be a whole number between 1 and ${max} \\(${knob}\\), received ${value}`,
      ),
    );
  }
  const { taskId } = await startAgent(klym, "go", { tools: ["read_graph", "teleport"] });
  const final = await waitFinal(client, taskId);
  assert.equal(final.error?.code, "invalid_params");
  assert.match(final.error!.message, /"params.tools" names tools grynya does not offer: teleport/);
  const edge = await startAgent(klym, "go", { max_steps: 5, tools: ["read_graph"] });
  assert.equal((await waitFinal(edge.client, edge.taskId)).status, "succeeded");
  assert.deepEqual(model.requests.at(-1)!.tools!.map((t) => t.function.name), [
    "read_graph",
    "save_progress",
    "report_progress",
  ]);
});

Deno.test("cancel during a model call aborts the provider's HTTP request", async () => {
  await using graph = await startFastMcpPeer();
  await using model = startScriptedModel(() => ({ hang: true }));
  await using klym = await startKlym(modelEnv(model, { KLYM_GRYNYA_URL: graph.url }));
  const { client, taskId } = await startAgent(klym, "think forever");
  while (model.requests.length === 0) await new Promise((r) => setTimeout(r, 20));
  // Deno.serve does not signal an abort for a request whose body was large, so watch the socket.
  const port = Number(new URL(model.baseUrl).port);
  assert.equal(establishedTo(port), 1, "the model request is open");
  await call(client, "cancel_task", { task_id: taskId });
  const final = await waitFinal(client, taskId);
  assert.equal(final.status, "cancelled");
  for (let i = 0; i < 100 && establishedTo(port) > 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(establishedTo(port), 0, "the model request was aborted");
});

Deno.test("a model that does not answer within KLYM_LLM_TIMEOUT_MS fails the call clearly", async () => {
  await using graph = await startFastMcpPeer();
  await using model = startScriptedModel(() => ({ hang: true }));
  await using klym = await startKlym(
    modelEnv(model, { KLYM_GRYNYA_URL: graph.url, KLYM_LLM_TIMEOUT_MS: "1000" }),
  );
  const { client, taskId } = await startAgent(klym, "think");
  const final = await waitFinal(client, taskId);
  assert.equal(final.error?.code, "model_timeout");
  assert.match(
    final.error!.message,
    /openai-compatible:scripted did not answer within 1000 ms \(KLYM_LLM_TIMEOUT_MS\)/,
  );
  assert.ok(ranMs(final) < 5000, `${ranMs(final)} ms`);
});

Deno.test("a timeout during a grynya call ends the agent as timed_out", async () => {
  await using graph = await startFastMcpPeer();
  await using model = startScriptedModel(() => ({ toolCalls: [{ name: "hang", args: {} }] }));
  await using klym = await startKlym(modelEnv(model, { KLYM_GRYNYA_URL: graph.url }));
  // The timeout must fall while the agent waits on grynya: on a loaded machine the agent may not
  // reach its call within 5 s, and then the run is made again with a longer timeout.
  for (const timeoutS of [5, 20, 45]) {
    const { client, taskId } = await startAgent(klym, "wait on grynya", {}, timeoutS);
    const final = await waitFinal(client, taskId);
    assert.equal(final.status, "timed_out");
    if (!final.allLogs.some((l) => /→ hang/.test(l.text))) continue;
    // The task's timeout ended it, not grynya's 60 s call timeout.
    assert.ok(ranMs(final) < timeoutS * 1000 + 5000, `${ranMs(final)} ms`);
    return;
  }
  assert.fail("The agent never reached its grynya call before its timeout, even with 45 s");
});

Deno.test("an unreachable or rate-limiting model fails clearly; 429s are retried", async () => {
  await using graph = await startFastMcpPeer();
  {
    await using klym = await startKlym({
      KLYM_GRYNYA_URL: graph.url,
      KLYM_MODEL: "openai-compatible:gone",
      KLYM_OPENAI_COMPATIBLE_URL: `http://127.0.0.1:${freePort()}/v1`,
      KLYM_LLM_RETRIES: "0",
    });
    const { client, taskId } = await startAgent(klym, "hello?");
    const final = await waitFinal(client, taskId);
    assert.equal(final.error?.code, "model_error");
    assert.match(final.error!.message, /openai-compatible:gone failed/);
  }
  await using model = startScriptedModel((_r, n) =>
    n < 2
      ? { status: 429, body: { error: { message: "slow down", type: "rate_limit" } } }
      : { text: "finally" }
  );
  await using klym = await startKlym(
    modelEnv(model, { KLYM_GRYNYA_URL: graph.url, KLYM_LLM_RETRIES: "2" }),
  );
  const { client, taskId } = await startAgent(klym, "hello?");
  const final = await waitFinal(client, taskId);
  assert.equal(final.status, "succeeded", JSON.stringify(final.error));
  assert.equal(model.requests.length, 3);
  await using refusing = startScriptedModel(() => ({
    status: 429,
    body: { error: { message: "quota exhausted" } },
  }));
  await using klym2 = await startKlym(
    modelEnv(refusing, { KLYM_GRYNYA_URL: graph.url, KLYM_LLM_RETRIES: "1" }),
  );
  const again = await startAgent(klym2, "hello?");
  const failed = await waitFinal(again.client, again.taskId);
  assert.equal(failed.error?.code, "model_error");
  assert.match(failed.error!.message, /quota exhausted/);
  assert.equal(refusing.requests.length, 2, "one retry, then a clear failure");
});

Deno.test("with no model and no sampling client, agent tasks are refused with how to configure one", async () => {
  await using klym = await startKlym();
  const client = await klym.connect();
  const message = await callError(client, "start_async_agent_task", { prompt: "hi" });
  assert.match(message, /NO_MODEL: .*Set KLYM_MODEL=provider:model/);
  assert.match(await callError(client, "llm_generate", { prompt: "hi" }), /NO_MODEL: .*KLYM_MODEL/);
  const models = await call<{ models: unknown[]; client_sampling: boolean }>(
    client,
    "list_models",
    {},
  );
  assert.deepEqual(models, { models: [], client_sampling: false });
});

Deno.test("llm_generate and list_models speak to the configured model", async () => {
  await using model = startScriptedModel((request) => ({
    text: `echo: ${textOf(request.messages.at(-1)!)} (system: ${textOf(request.messages[0]!)})`,
  }));
  await using klym = await startKlym(modelEnv(model));
  const client = await klym.connect();
  const out = await call<{ text: string; model: string; usage: { output_tokens: number } }>(
    client,
    "llm_generate",
    {
      prompt: "ping",
      system: "be brief",
      max_tokens: 50,
      temperature: 0,
    },
  );
  assert.equal(out.text, "echo: ping (system: be brief)");
  assert.equal(out.model, "openai-compatible:scripted");
  assert.equal(out.usage.output_tokens, 10);
  assert.equal(model.requests[0]!.temperature, 0);
  assert.match(
    await callError(client, "llm_generate", { prompt: "x", model: "openai:nope" }),
    /MODEL_NOT_CONFIGURED: .*configured: openai-compatible:scripted/,
  );
  assert.match(
    await callError(client, "llm_generate", { prompt: "x", temperature: 3 }),
    /"temperature" must be between 0 and 2/,
  );
  assert.match(
    await callError(client, "start_async_agent_task", { prompt: "x", model: "openai:nope" }),
    /MODEL_NOT_CONFIGURED: .*"model"/,
  );
  const models = await call(client, "list_models", {});
  assert.deepEqual(models, {
    models: [{
      id: "openai-compatible:scripted",
      provider: "openai-compatible",
      name: "scripted",
      default: true,
    }],
    default_model: "openai-compatible:scripted",
    client_sampling: false,
  });
});

Deno.test("with no model configured, the agent uses the client's own model through sampling", async () => {
  await using graph = await startFastMcpPeer();
  await using klym = await startKlym({ KLYM_GRYNYA_URL: graph.url });
  const client = new Client({ name: "sampling-client", version: "1" }, {
    capabilities: { sampling: { tools: {} } },
  });
  const seen: unknown[] = [];
  client.setRequestHandler("sampling/createMessage", (request) => {
    seen.push(request.params);
    const params = request.params as {
      messages: { role: string; content: unknown }[];
      tools?: { name: string }[];
    };
    if (params.tools?.length && params.messages.length === 1) {
      return {
        role: "assistant",
        model: "client-model",
        stopReason: "toolUse",
        content: [{ type: "tool_use", id: "use_1", name: "read_graph", input: {} }],
      } as never;
    }
    return {
      role: "assistant",
      model: "client-model",
      stopReason: "endTurn",
      content: { type: "text", text: "sampled answer" },
    } as never;
  });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${klym.url}/mcp`)));
  try {
    const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
      prompt: "use your own model",
    });
    const final = await waitFinal(client, task_id);
    assert.equal(final.status, "succeeded", JSON.stringify(final.error));
    assert.equal((final.result as { answer: string; model: string }).answer, "sampled answer");
    assert.equal((final.result as { model: string }).model, "client-sampling:client-model");
    assert.equal(seen.length, 2);
    const second = seen[1] as { messages: { role: string; content: { type: string }[] }[] };
    assert.equal(second.messages[2]!.content[0]!.type, "tool_result");
    const generated = await call<{ text: string }>(client, "llm_generate", { prompt: "hi" });
    assert.equal(generated.text, "sampled answer");
  } finally {
    await client.close();
  }
});

Deno.test("custom kinds reach the model through ctx.llm, without the key", async () => {
  await using model = startScriptedModel((request) => ({
    text: `you said ${textOf(request.messages.at(-1)!)}`,
  }));
  await using klym = await startKlym(modelEnv(model));
  const client = await klym.connect();
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind: "llm_once",
    prompt: "hello",
  });
  const final = await waitFinal(client, task_id);
  assert.deepEqual(final.result, { text: "you said hello", model: "openai-compatible:scripted" });
  assert.equal(model.authorizations[0], `Bearer ${API_KEY}`);
});

Deno.test("prompts are limited in UTF-8 bytes, the same for llm_generate and tasks", async () => {
  await using model = startScriptedModel(() => ({ text: "ok" }));
  await using klym = await startKlym(modelEnv(model, { KLYM_MAX_PROMPT_BYTES: "10" }));
  const client = await klym.connect();
  const fits = "яяяяя"; // 10 bytes in 5 characters
  const over = "яяяяяa"; // 11 bytes
  assert.equal((await call<{ text: string }>(client, "llm_generate", { prompt: fits })).text, "ok");
  assert.match(
    await callError(client, "llm_generate", { prompt: over }),
    /"prompt" is 11 bytes, the limit is 10 \(KLYM_MAX_PROMPT_BYTES\)/,
  );
  assert.match(
    await callError(client, "llm_generate", { prompt: "x", system: over }),
    /"system" is 11 bytes, the limit is 10/,
  );
  assert.match(
    await callError(client, "start_async_agent_task", { kind: "hello", prompt: over }),
    /"prompt" is 11 bytes, the limit is 10 \(KLYM_MAX_PROMPT_BYTES\)/,
  );
  await call(client, "start_async_agent_task", { kind: "hello", prompt: fits });
});
