/**
 * What a 2026-07-28 client gets beside a 2025 one, on the wire of a real Klym: a plain `run_task`
 * that asks the client's model through input-required results, live log lines for a request that
 * names a log level, `tasks/*` without `Mcp-Name`, each era's own pending input, and refusals
 * that name the field or say what to do.
 */
import assert from "node:assert/strict";
import { startKlym } from "../helpers/klym_process.ts";
import { ModernMcp, RawMcp, type RpcMessage, TASKS_EXTENSION } from "../helpers/raw_mcp.ts";

type Json = Record<string, unknown>;
const LOG_LEVEL = "io.modelcontextprotocol/logLevel";

const answer = (text: string) => ({
  role: "assistant",
  content: { type: "text", text },
  model: "client-model",
  stopReason: "endTurn",
});

async function untilStatus(mcp: ModernMcp, taskId: unknown, wanted: string[]): Promise<Json> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const task = await mcp.request("tasks/get", { taskId });
    if (wanted.includes(String(task.status))) return task;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`task ${taskId} never became ${wanted.join(" or ")}`);
}

const logLines = (messages: RpcMessage[]) =>
  messages.filter((m) => m.method === "notifications/message").flatMap((m) =>
    (m.params?.data as { lines: { text: string }[] }).lines.map((l) => l.text)
  );

Deno.test("a plain 2026-07-28 run_task asks the client's model through input-required rounds", async (t) => {
  await using klym = await startKlym();
  const mcp = new ModernMcp(klym.url, { sampling: {} });

  await t.step(
    "the first call answers the sampling request, the retry gets the result",
    async () => {
      const first = await mcp.request("tools/call", {
        name: "run_task",
        arguments: { kind: "llm_once", prompt: "Capital of France?" },
      });
      assert.equal(first.resultType, "input_required");
      const requests = first.inputRequests as Record<string, { method: string; params: Json }>;
      const [key, ...others] = Object.keys(requests);
      assert.deepEqual(others, []);
      assert.equal(requests[key!]!.method, "sampling/createMessage");
      assert.match(JSON.stringify(requests[key!]!.params.messages), /Capital of France\?/);
      assert.match(String(first.requestState), /^klym-run:t_/);

      const { message, messages } = await mcp.send(
        "tools/call",
        {
          name: "run_task",
          arguments: { kind: "llm_once", prompt: "Capital of France?" },
          inputResponses: { [key!]: answer("Paris") },
          requestState: first.requestState,
        },
        {},
        { [LOG_LEVEL]: "info" },
      );
      const done = message.result!;
      assert.equal(done.resultType, "complete");
      const summary = done.structuredContent as { status: string; result: Json };
      assert.equal(summary.status, "succeeded");
      assert.deepEqual(summary.result, { text: "Paris", model: "client-sampling:client-model" });
      // The retry asked for logs: the task's line went on its stream.
      assert.deepEqual(logLines(messages), ["model said: Paris"]);
    },
  );

  await t.step("a requestState Klym did not send is refused, naming the field", async () => {
    const refused = await mcp.request("tools/call", {
      name: "run_task",
      arguments: { kind: "llm_once" },
      requestState: "klym-run:../etc",
    });
    assert.equal(refused.isError, true);
    assert.match(JSON.stringify(refused.content), /INVALID_INPUT: .*\\"requestState\\"/);
  });

  await t.step("another principal's task id in requestState is no task at all", async () => {
    const refused = await mcp.request("tools/call", {
      name: "run_task",
      arguments: { kind: "llm_once" },
      requestState: "klym-run:t_doesnotexist0000:0",
    });
    assert.equal(refused.isError, true);
    assert.match(JSON.stringify(refused.content), /TASK_NOT_FOUND/);
  });

  await t.step("start_async_agent_task of an agent says exactly what to do instead", async () => {
    const started = await mcp.request("tools/call", {
      name: "start_async_agent_task",
      arguments: { kind: "agent", prompt: "hi" },
    });
    assert.equal(started.isError, true);
    const text = JSON.stringify(started.content);
    assert.match(text, /NO_MODEL/);
    for (const fix of [/run_task/, /KLYM_MODEL/, /2025-11-25/]) assert.match(text, fix);
    assert.doesNotMatch(text, /did not offer MCP sampling/);
  });

  await t.step("an agent run_task without sampling in the request says to declare it", async () => {
    const plain = new ModernMcp(klym.url, {});
    const refused = await plain.request("tools/call", {
      name: "run_task",
      arguments: { kind: "agent", prompt: "hi" },
    });
    assert.equal(refused.isError, true);
    assert.match(JSON.stringify(refused.content), /declare no sampling.*sampling_handler/);
  });
});

Deno.test("2026-07-28 live logs: a plain run_task and tasks/get that name a log level get the lines", async (t) => {
  await using klym = await startKlym();
  const mcp = new ModernMcp(klym.url);
  const plain = new ModernMcp(klym.url, {});

  await t.step("a plain call gets its task's lines on its own stream, at its level", async () => {
    const args = { name: "run_task", arguments: { kind: "print_lines", params: { lines: 3 } } };
    const withLogs = await plain.send("tools/call", args, {}, { [LOG_LEVEL]: "info" });
    assert.equal((withLogs.message.result!.structuredContent as Json).status, "succeeded");
    assert.equal(logLines(withLogs.messages).length, 3);
    // No level, no log messages; a level above the lines', none either.
    assert.deepEqual(logLines((await plain.send("tools/call", args)).messages), []);
    const above = await plain.send("tools/call", args, {}, { [LOG_LEVEL]: "error" });
    assert.deepEqual(logLines(above.messages), []);
  });

  await t.step("tasks/get with a level delivers the lines since the last such poll", async () => {
    const created = await mcp.request("tools/call", {
      name: "run_task",
      arguments: { kind: "print_lines", params: { lines: 2 } },
    });
    await untilStatus(mcp, created.taskId, ["completed"]);
    const first = await mcp.send("tasks/get", { taskId: created.taskId }, {}, {
      [LOG_LEVEL]: "debug",
    });
    assert.equal(logLines(first.messages).length, 2);
    const again = await mcp.send("tasks/get", { taskId: created.taskId }, {}, {
      [LOG_LEVEL]: "debug",
    });
    assert.deepEqual(logLines(again.messages), []);
  });
});

Deno.test("tasks/* without Mcp-Name is served; a disagreeing one is still refused", async () => {
  await using klym = await startKlym();
  const mcp = new ModernMcp(klym.url);
  const created = await mcp.request("tools/call", {
    name: "run_task",
    arguments: { kind: "sleep", params: { ms: 60_000 } },
  });
  const taskId = String(created.taskId);
  // The header left out, as fastmcp-tasks 4.1 does.
  const noName = { "mcp-name": "" };
  const got = await mcp.send("tasks/get", { taskId }, noName);
  assert.equal(got.status, 200);
  assert.equal(got.message.result?.status, "working");
  const update = await mcp.send("tasks/update", { taskId, inputResponses: {} }, noName);
  assert.equal(update.message.result?.resultType, "complete");
  const wrong = await mcp.send("tasks/cancel", { taskId }, { "mcp-name": "t_someoneelse" });
  assert.equal(wrong.status, 400);
  assert.equal(wrong.message.error?.code, -32020);
  const cancel = await mcp.send("tasks/cancel", { taskId }, noName);
  assert.equal(cancel.message.result?.resultType, "complete");
  assert.equal((await untilStatus(mcp, taskId, ["cancelled"])).status, "cancelled");
});

Deno.test("each era sees only its own pending input", async (t) => {
  await using klym = await startKlym();
  const modern = new ModernMcp(klym.url, { sampling: {}, extensions: { [TASKS_EXTENSION]: {} } });

  await t.step("a task parked for a 2026 client is working to a 2025 tasks/get", async () => {
    const created = await modern.request("tools/call", {
      name: "run_task",
      arguments: { kind: "llm_once", prompt: "hi" },
    });
    await untilStatus(modern, created.taskId, ["input_required"]);
    const legacy = new RawMcp(klym.url);
    await legacy.initialize();
    try {
      const seen = await legacy.request("tasks/get", { taskId: created.taskId });
      assert.equal(seen.result?.status, "working");
    } finally {
      await legacy.close();
    }
    await modern.request("tasks/cancel", { taskId: created.taskId });
  });
});

Deno.test("malformed answers and model-less task starts are refused at once", async (t) => {
  await using klym = await startKlym();
  const mcp = new ModernMcp(klym.url, { sampling: {}, extensions: { [TASKS_EXTENSION]: {} } });
  const created = await mcp.request("tools/call", {
    name: "run_task",
    arguments: { kind: "sleep", params: { ms: 60_000 } },
  });

  await t.step("tasks/update with inputResponses that is no object names the field", async () => {
    for (const bad of ["yes", 3, null, [1]]) {
      const { status, message } = await mcp.send("tasks/update", {
        taskId: created.taskId,
        inputResponses: bad,
      });
      assert.equal(status, 400, JSON.stringify(bad));
      assert.equal(message.error?.code, -32602);
      assert.match(message.error!.message, /"inputResponses" must be an object/);
    }
    const missing = await mcp.send("tasks/update", { taskId: created.taskId });
    assert.equal(missing.message.error?.code, -32602);
    assert.match(missing.message.error!.message, /"inputResponses" is missing/);
    const wrapped = await mcp.send("tasks/update", {
      taskId: created.taskId,
      inputResponses: { k: { method: "sampling/createMessage", result: answer("x") } },
    });
    assert.equal(wrapped.message.error?.code, -32602);
    assert.match(wrapped.message.error!.message, /"k"/);
  });

  await t.step("a Tasks-extension llm_generate with no model and no sampling: -32021", async () => {
    const noSampling = new ModernMcp(klym.url);
    const { status, message } = await noSampling.send("tools/call", {
      name: "llm_generate",
      arguments: { prompt: "hi" },
    });
    assert.equal(status, 400);
    assert.equal(message.error?.code, -32021);
    const data = (message.error as { data?: { requiredCapabilities?: Json } }).data;
    assert.deepEqual(data?.requiredCapabilities, { sampling: {} });
    const plain = await new ModernMcp(klym.url, {}).send("tools/call", {
      name: "llm_generate",
      arguments: { prompt: "hi" },
    });
    assert.equal(plain.message.error?.code, -32021);
  });
  await mcp.request("tasks/cancel", { taskId: created.taskId });
});

Deno.test("a Tasks-extension task its client stops polling is cancelled after KLYM_TASK_POLL_LEASE_S", async (t) => {
  await using klym = await startKlym({ KLYM_TASK_POLL_LEASE_S: "2" });
  const mcp = new ModernMcp(klym.url);
  const plain = new ModernMcp(klym.url, {});
  const spin = () => mcp.request("tools/call", { name: "run_task", arguments: { kind: "spin" } });
  const status = async (taskId: unknown) =>
    (await plain.request("tools/call", {
      name: "check_task_status",
      arguments: { task_id: taskId },
    })).structuredContent as { status: string; error?: { message: string } };

  await t.step("a task polled all along keeps running past the lease", async () => {
    const created = await spin();
    const until = Date.now() + 5_000;
    while (Date.now() < until) {
      assert.equal((await mcp.request("tasks/get", { taskId: created.taskId })).status, "working");
      await new Promise((r) => setTimeout(r, 200));
    }
    await mcp.request("tasks/cancel", { taskId: created.taskId });
  });

  await t.step("a CPU loop nobody polls ends cancelled, naming the knob", async () => {
    const created = await spin();
    // check_task_status is no tasks/* request: it does not hold the lease.
    const deadline = Date.now() + 60_000;
    let seen = await status(created.taskId);
    while (seen.status !== "cancelled" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      seen = await status(created.taskId);
    }
    assert.equal(seen.status, "cancelled");
    assert.match(seen.error?.message ?? "", /KLYM_TASK_POLL_LEASE_S/);
  });
});
