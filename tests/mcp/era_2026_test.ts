/**
 * The 2026-07-28 Tasks extension (`io.modelcontextprotocol/tasks`) against a real Klym, over
 * session-less HTTP requests. The official conformance suite's extension scenarios need the
 * reference server's fixture tools (`slow_compute`, `failing_job`, `greet`, …); each check named
 * here (by the suite's check id) drives the same protocol steps with Klym's own tools.
 */
import assert from "node:assert/strict";
import { startKlym } from "../helpers/klym_process.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";
import { ModernMcp, TASKS_EXTENSION } from "../helpers/raw_mcp.ts";

type Json = Record<string, unknown>;
const TASK_FIELDS = ["taskId", "status", "result", "error", "inputRequests"];

async function untilFinal(mcp: ModernMcp, taskId: string, timeoutMs = PATIENCE_MS): Promise<Json> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const task = await mcp.request("tasks/get", { taskId });
    if (!["working", "input_required"].includes(String(task.status))) return task;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`task ${taskId} still not final after ${timeoutMs} ms`);
}

const runTask = (mcp: ModernMcp, kind: string, params: Json = {}) =>
  mcp.request("tools/call", { name: "run_task", arguments: { kind, params } });

Deno.test("Tasks extension: run_task becomes a task, read and cancelled through tasks/*", async (t) => {
  await using klym = await startKlym();
  const mcp = new ModernMcp(klym.url);
  const plain = new ModernMcp(klym.url, {});

  await t.step("tasks-extension-advertised: server/discover names the extension", async () => {
    const found = await plain.request("server/discover");
    const caps = found.capabilities as { extensions?: Json };
    assert.deepEqual(caps.extensions?.[TASKS_EXTENSION], {});
    assert.ok((found.supportedVersions as string[]).includes("2026-07-28"));
  });

  await t.step("sep-2663-result-type-task-on-create, wire fields, durable create", async () => {
    const created = await runTask(mcp, "sleep", { ms: 60_000 });
    assert.equal(created.resultType, "task");
    assert.equal(created.status, "working");
    assert.match(String(created.taskId), /^t_[0-9a-z]{32,}$/);
    assert.ok(Number.isInteger(created.ttlMs) && (created.ttlMs as number) > 0);
    assert.ok(Number.isInteger(created.pollIntervalMs) && (created.pollIntervalMs as number) > 0);
    for (const gone of ["ttl", "pollInterval", "task", "requestState", "inputRequests"]) {
      assert.ok(!(gone in created), `CreateTaskResult carries no ${gone}`);
    }
    // sep-2663-durable-create-strong-consistency and sep-2663-tasks-get-status-working.
    const got = await mcp.request("tasks/get", { taskId: created.taskId });
    assert.equal(got.taskId, created.taskId);
    assert.equal(got.status, "working");
    assert.equal(got.resultType, "complete");
    assert.ok(!("requestState" in got) && !("result" in got));
    // The same task is a registry task: the four tools see it.
    const status = await plain.request("tools/call", {
      name: "check_task_status",
      arguments: { task_id: created.taskId },
    });
    assert.equal((status.structuredContent as Json).status, "running");

    // sep-2663-cancel-ack-empty-result: an empty ack, and the task settles to cancelled.
    const ack = await mcp.request("tasks/cancel", { taskId: created.taskId });
    assert.equal(ack.resultType, "complete");
    assert.deepEqual(TASK_FIELDS.filter((f) => f in ack), []);
    assert.equal((await untilFinal(mcp, String(created.taskId))).status, "cancelled");
    // tasks-cancel-terminal-idempotent-ack: the same ack once final.
    const again = await mcp.request("tasks/cancel", { taskId: created.taskId });
    assert.equal(again.resultType, "complete");
    assert.deepEqual(TASK_FIELDS.filter((f) => f in again), []);
  });

  await t.step(
    "sep-2663-tasks-get-status-completed: the result inline, no related-task _meta",
    async () => {
      const created = await runTask(mcp, "hello");
      const done = await untilFinal(mcp, String(created.taskId));
      assert.equal(done.status, "completed");
      assert.equal(done.resultType, "complete");
      const result = done.result as { structuredContent: Json; isError?: boolean; _meta?: Json };
      assert.equal(result.structuredContent.status, "succeeded");
      assert.deepEqual((result.structuredContent.result as Json).taskId, created.taskId);
      assert.notEqual(result.isError, true);
      assert.ok(!result._meta?.["io.modelcontextprotocol/related-task"]);
      // tasks-no-early-ttl-expiry: still there a moment later.
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(
        (await mcp.request("tasks/get", { taskId: created.taskId })).status,
        "completed",
      );
    },
  );

  await t.step(
    "sep-2663-tool-error-uses-completed-status: a failed task is a completed tool error",
    async () => {
      const created = await runTask(mcp, "fail");
      const done = await untilFinal(mcp, String(created.taskId));
      assert.equal(done.status, "completed");
      const result = done.result as { structuredContent: Json; isError?: boolean };
      assert.equal(result.isError, true);
      assert.equal(result.structuredContent.status, "failed");
      assert.match(String(done.statusMessage), /task gave up/);
    },
  );

  await t.step(
    "sep-2663-server-rejects-undeclared-client: no extension, a plain waiting call",
    async () => {
      const answer = await runTask(plain, "hello");
      assert.ok(!("taskId" in answer) && answer.resultType === "complete");
      assert.equal((answer.structuredContent as Json).status, "succeeded");
      assert.ok(Array.isArray(answer.content));
    },
  );

  await t.step(
    "sep-2663-legacy-task-param-ignored: 2025's task param promotes nothing",
    async () => {
      const answer = await mcp.request("tools/call", {
        name: "list_tasks",
        arguments: {},
        task: { ttl: 60_000, pollInterval: 100 },
      });
      assert.ok(!("taskId" in answer) && answer.resultType === "complete");
      assert.ok(Array.isArray(answer.content) && answer.content.length > 0);
    },
  );

  await t.step("sep-2663-tasks-methods-non-declaring: -32021 naming the extension", async () => {
    const created = await runTask(mcp, "hello");
    for (const method of ["tasks/get", "tasks/cancel", "tasks/update"]) {
      const { status, message } = await plain.send(method, {
        taskId: created.taskId,
        inputResponses: {},
      });
      assert.equal(status, 400, method);
      assert.equal(message.error?.code, -32021, method);
      const data = (message.error as { data?: { requiredCapabilities?: { extensions?: Json } } })
        .data;
      assert.deepEqual(data?.requiredCapabilities?.extensions?.[TASKS_EXTENSION], {});
    }
  });

  await t.step("sep-2663-server-rejects-mismatched-mcp-name-on-tasks-get: -32020", async () => {
    const created = await runTask(mcp, "hello");
    const { status, message } = await mcp.send("tasks/get", { taskId: created.taskId }, {
      "mcp-name": "some-other-task",
    });
    assert.equal(status, 400);
    assert.equal(message.error?.code, -32020);
  });

  await t.step("sep-2663-tasks-get-invalid-task-id-32602, and removed 2025 methods", async () => {
    const { message } = await mcp.send("tasks/get", { taskId: "t_nonexistent" });
    assert.equal(message.error?.code, -32602);
    for (const method of ["tasks/result", "tasks/list"]) {
      assert.equal((await mcp.send(method, { taskId: "t_x" })).message.error?.code, -32601);
    }
  });

  await t.step("tasks/update ignores keys that are not outstanding", async () => {
    const created = await runTask(mcp, "sleep", { ms: 60_000 });
    const ack = await mcp.request("tasks/update", {
      taskId: created.taskId,
      inputResponses: { "never-issued": { action: "accept", content: {} } },
    });
    assert.equal(ack.resultType, "complete");
    assert.equal((await mcp.request("tasks/get", { taskId: created.taskId })).status, "working");
    await mcp.request("tasks/cancel", { taskId: created.taskId });
  });
});

Deno.test("Tasks extension: a principal sees only its own tasks", async () => {
  await using klym = await startKlym({
    KLYM_AUTH_TOKENS: "alice:alice-token-0123456789,bob:bob-token-0123456789ab",
  });
  const caps = { extensions: { [TASKS_EXTENSION]: {} } };
  const alice = new ModernMcp(klym.url, caps, "alice-token-0123456789");
  const bob = new ModernMcp(klym.url, caps, "bob-token-0123456789ab");
  const created = await runTask(alice, "sleep", { ms: 60_000 });
  for (const method of ["tasks/get", "tasks/cancel", "tasks/update"]) {
    const { message } = await bob.send(method, { taskId: created.taskId, inputResponses: {} });
    assert.equal(message.error?.code, -32602, method);
  }
  assert.equal((await alice.request("tasks/get", { taskId: created.taskId })).status, "working");
  await alice.request("tasks/cancel", { taskId: created.taskId });
});

Deno.test("Tasks extension: a task asks the client's own model through inputRequests and tasks/update", async (t) => {
  await using klym = await startKlym();
  const mcp = new ModernMcp(klym.url, { sampling: {}, extensions: { [TASKS_EXTENSION]: {} } });

  const waitFor = async (taskId: unknown, status: string) => {
    const deadline = Date.now() + PATIENCE_MS;
    while (Date.now() < deadline) {
      const task = await mcp.request("tasks/get", { taskId });
      if (task.status === status) return task;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`task ${taskId} never became ${status}`);
  };

  await t.step(
    "sep-2663-tasks-get-status-input-required, tasks-mrtr-tasks-update-resumes",
    async () => {
      const created = await mcp.request("tools/call", {
        name: "run_task",
        arguments: { kind: "llm_once", prompt: "What is the capital of France?" },
      });
      const asking = await waitFor(created.taskId, "input_required");
      const requests = asking.inputRequests as Record<string, { method: string; params: Json }>;
      const [key, ...others] = Object.keys(requests);
      assert.deepEqual(others, []);
      assert.equal(requests[key!]!.method, "sampling/createMessage");
      const messages = requests[key!]!.params.messages as { content: { text: string } }[];
      assert.equal(messages[0]!.content.text, "What is the capital of France?");
      // Polling again shows the same request under the same key until it is answered.
      assert.deepEqual(
        Object.keys(
          (await mcp.request("tasks/get", { taskId: created.taskId })).inputRequests as Json,
        ),
        [key],
      );

      const ack = await mcp.request("tasks/update", {
        taskId: created.taskId,
        inputResponses: {
          [key!]: {
            role: "assistant",
            content: { type: "text", text: "Paris" },
            model: "client-model",
            stopReason: "endTurn",
          },
        },
      });
      assert.equal(ack.resultType, "complete");
      const done = await waitFor(created.taskId, "completed");
      const result = (done.result as { structuredContent: { result: Json } }).structuredContent;
      assert.deepEqual(result.result, { text: "Paris", model: "client-sampling:client-model" });
    },
  );

  await t.step(
    "an answer that is no sampling result fails the task, saying what is wrong",
    async () => {
      const created = await mcp.request("tools/call", {
        name: "run_task",
        arguments: { kind: "llm_once", prompt: "hi" },
      });
      const asking = await waitFor(created.taskId, "input_required");
      const key = Object.keys(asking.inputRequests as Json)[0]!;
      await mcp.request("tasks/update", {
        taskId: created.taskId,
        inputResponses: { [key]: { role: "assistant", content: { type: "text", text: "x" } } },
      });
      const done = await waitFor(created.taskId, "completed");
      const result = done.result as { isError?: boolean; structuredContent: { error: Json } };
      assert.equal(result.isError, true);
      assert.match(String(result.structuredContent.error.message), /model/);
    },
  );

  await t.step("without sampling in the request, the task has no model to ask", async () => {
    const noSampling = new ModernMcp(klym.url);
    // A custom kind starts and fails at its first model call; an agent is refused at start.
    const created = await noSampling.request("tools/call", {
      name: "run_task",
      arguments: { kind: "llm_once", prompt: "hi" },
    });
    assert.equal(created.resultType, "task");
    const done = await untilFinal(noSampling, String(created.taskId));
    assert.equal(done.status, "completed");
    assert.equal((done.result as { isError?: boolean }).isError, true);
    const agent = await noSampling.request("tools/call", {
      name: "run_task",
      arguments: { kind: "agent", prompt: "hi" },
    });
    assert.equal(agent.isError, true);
    assert.match(JSON.stringify(agent.content), /NO_MODEL/);
  });

  await t.step(
    "a task started outside the extension cannot ask the client: NO_MODEL, plainly",
    async () => {
      // start_async_agent_task from a 2026 client that declares sampling: no server-to-client
      // request can be sent in that era, so the task has no model rather than an SDK error.
      const started = await mcp.request("tools/call", {
        name: "start_async_agent_task",
        arguments: { kind: "llm_once", prompt: "hi" },
      });
      const taskId = (started.structuredContent as Json).task_id;
      const done = await untilFinal(mcp, String(taskId));
      assert.equal(done.status, "completed");
      const message = String(done.statusMessage);
      assert.match(message, /NO_MODEL/);
      assert.doesNotMatch(message, /Server-to-client requests are not available/);
    },
  );
});

Deno.test("Tasks extension: an input request left unanswered expires after KLYM_LLM_TIMEOUT_MS", async () => {
  await using klym = await startKlym({ KLYM_LLM_TIMEOUT_MS: "1000" });
  const mcp = new ModernMcp(klym.url, { sampling: {}, extensions: { [TASKS_EXTENSION]: {} } });
  const created = await mcp.request("tools/call", {
    name: "run_task",
    arguments: { kind: "llm_once", prompt: "hi" },
  });
  const done = await untilFinal(mcp, String(created.taskId));
  assert.equal(done.status, "completed");
  assert.ok(!("inputRequests" in done));
  const result = done.result as { isError?: boolean; structuredContent: { error: Json } };
  assert.equal(result.isError, true);
  assert.match(String(result.structuredContent.error.message), /did not answer|1000 ms/);
});
