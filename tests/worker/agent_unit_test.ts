/** The agent loop in-process, with a fake ctx: each branch of its control flow, without processes. */
import assert from "node:assert/strict";
import { agent } from "../../src/worker/kinds/agent.ts";
import type { GrynyaHandle, TaskContext } from "../../src/worker/task_context.ts";
import type { LlmRequest, LlmResponse } from "../../src/protocol.ts";
import { KlymError } from "../../src/errors.ts";

type Reply = Partial<LlmResponse> & { toolCalls?: LlmResponse["toolCalls"] };

function fakeCtx(options: {
  replies: (request: LlmRequest, n: number) => Reply;
  callTool?: (name: string, args: Record<string, unknown>) => unknown;
  save?: (value: unknown) => unknown;
  budget?: { calls: number; tokens: number };
}) {
  const requests: LlmRequest[] = [];
  const progress: string[] = [];
  const grynya: GrynyaHandle = {
    info: { name: "fake-graph", version: "1", transport: "http" },
    capabilities: () => ({ tools: {} }),
    writeStrategy: () => Promise.resolve({ ok: true, name: "memory", source: "auto" }),
    listTools: () => Promise.resolve({ tools: [{ name: "read_graph", inputSchema: {} }] }),
    listResources: () => Promise.resolve({ resources: [] }),
    readResource: () => Promise.resolve({ contents: [] }),
    listPrompts: () => Promise.resolve({ prompts: [] }),
    getPrompt: () => Promise.resolve({ messages: [] }),
    callTool: (name, args = {}) =>
      Promise.resolve().then(() =>
        (options.callTool ?? (() => ({ content: [{ type: "text", text: "{}" }] })))(name, args)
      ) as ReturnType<GrynyaHandle["callTool"]>,
  };
  const ctx: TaskContext = {
    taskId: "t_unit",
    kind: "agent",
    prompt: "do the thing",
    params: {},
    signal: new AbortController().signal,
    progress: (done, total, message) => progress.push(`${done}/${total} ${message}`),
    grynya: () => Promise.resolve(grynya),
    save: (value) =>
      Promise.resolve().then(() =>
        (options.save ??
          (() => ({ seq: 1, ok: true, tools: ["write"], time: "now", reply: "stored" })))(value)
      ) as ReturnType<TaskContext["save"]>,
    llm: {
      generate: (request) => {
        requests.push(structuredClone(request));
        const reply = options.replies(request, requests.length);
        return Promise.resolve({
          model: "fake:model",
          text: "",
          toolCalls: [],
          usage: { inputTokens: 10, outputTokens: 5 },
          finishReason: "stop",
          ...reply,
        });
      },
    },
    budget: options.budget ?? { calls: 10, tokens: 100_000 },
  };
  return { ctx, requests, progress };
}

const call = (name: string, args: unknown = {}, id = name) => ({ id, name, args });

/** Runs the agent with its step log (console.log, as in a task) kept out of the test output. */
async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  // deno-lint-ignore no-console -- the agent is task code, whose log is console
  const log = console.log;
  // deno-lint-ignore no-console -- as above
  console.log = () => {};
  try {
    return await fn();
  } finally {
    // deno-lint-ignore no-console -- as above
    console.log = log;
  }
}

Deno.test("the agent runs the tools the model asks for and returns its final answer", async () => {
  const { ctx, requests, progress } = fakeCtx({
    replies: (_r, n) =>
      n === 1
        ? { toolCalls: [call("read_graph"), call("save_progress", { text: "found it" }, "s1")] }
        : { text: "all done" },
  });
  const result = await quietly(() => agent(ctx));
  assert.equal(result.answer, "all done");
  assert.equal(result.steps, 2);
  assert.deepEqual(result.graph_writes, [
    { seq: 1, ok: true, tools: ["write"], time: "now", reply: "stored" },
  ]);
  assert.deepEqual(result.usage, { inputTokens: 20, outputTokens: 10 });
  const tools = requests[1]!.messages.at(-1)!;
  assert.equal(tools.role, "tool");
  assert.deepEqual(
    tools.role === "tool" && tools.results.map((r) => [r.name, r.isError]),
    [["read_graph", false], ["save_progress", false]],
  );
  assert.match(progress.at(-1)!, /done: final answer after 2 steps/);
});

Deno.test("a rejected save and a refused grynya call go back to the model; the agent goes on", async () => {
  const { ctx, requests } = fakeCtx({
    replies: (_r, n) =>
      n === 1
        ? { toolCalls: [call("save_progress", { text: "x" }), call("read_graph", { bad: 1 })] }
        : { text: "recovered" },
    save: () => ({
      seq: 1,
      ok: false,
      tools: ["write"],
      time: "now",
      reply: "Error: store full",
      error: { code: "grynya_write_rejected", message: "grynya said no" },
    }),
    callTool: () => {
      throw new KlymError("grynya_error", "MCP error -32602: invalid arguments");
    },
  });
  const result = await quietly(() => agent(ctx));
  assert.equal(result.answer, "recovered");
  const tools = requests[1]!.messages.at(-1)!;
  assert.ok(tools.role === "tool");
  assert.deepEqual(tools.results.map((r) => [r.isError, r.output]), [
    [true, "grynya_write_rejected: grynya said no"],
    [true, "grynya_error: MCP error -32602: invalid arguments"],
  ]);
});

Deno.test("losing grynya ends the agent with grynya's own code", async () => {
  const { ctx } = fakeCtx({
    replies: () => ({ toolCalls: [call("read_graph")] }),
    callTool: () => {
      throw new KlymError("grynya_unreachable", "Cannot reach grynya");
    },
  });
  await assert.rejects(
    quietly(() => agent(ctx)),
    (e: unknown) => e instanceof KlymError && e.code === "grynya_unreachable",
  );
});

Deno.test("bounded failures: a loop, failing turns, the step budget and the token budget", async () => {
  const cases: [string, Parameters<typeof fakeCtx>[0], string][] = [
    ["loop", { replies: () => ({ toolCalls: [call("read_graph", { q: 1 })] }) }, "loop_detected"],
    [
      "failing turns",
      { replies: (_r, n) => ({ toolCalls: [call("no_such_tool", { n })] }) },
      "tool_errors",
    ],
    [
      "steps",
      {
        replies: (_r, n) => ({ toolCalls: [call("read_graph", { n })] }),
        budget: { calls: 2, tokens: 1e6 },
      },
      "max_steps",
    ],
    [
      "tokens",
      {
        replies: (_r, n) => ({ toolCalls: [call("read_graph", { n })] }),
        budget: { calls: 50, tokens: 40 },
      },
      "token_budget",
    ],
  ];
  for (const [name, options, code] of cases) {
    const { ctx } = fakeCtx(options);
    await assert.rejects(
      quietly(() => agent(ctx)),
      (e: unknown) => e instanceof KlymError && e.code === code,
      name,
    );
  }
});
