/** MCP's own tasks (2025-11-25) and the live notifications, on the wire, against the real server. */
import assert from "node:assert/strict";
import { call, callError, OWN_SESSION, sharedKlym, startKlym } from "../helpers/klym_process.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";
import { INITIALIZE, parseSse, RawMcp, type RpcMessage } from "../helpers/raw_mcp.ts";

const RELATED = "io.modelcontextprotocol/related-task";
/** The file's one server with no setting of its own: each test keeps to its own sessions. */
const shared = sharedKlym();

async function poll(
  mcp: RawMcp,
  taskId: string,
  until: (status: string) => boolean,
): Promise<Record<string, unknown>> {
  for (const deadline = Date.now() + PATIENCE_MS; Date.now() < deadline;) {
    const got = await mcp.request("tasks/get", { taskId });
    if (until(String(got.result?.status))) return got.result!;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Task ${taskId} never reached the status wanted`);
}

Deno.test("a task-augmented run_task is a task of tasks/* and of the four tools alike", async (t) => {
  const klym = await shared.server();
  const mcp = new RawMcp(klym.url);
  const init = await mcp.initialize();
  assert.deepEqual((init.result?.capabilities as Record<string, unknown>).tasks, {
    list: {},
    cancel: {},
    requests: { tools: { call: {} } },
  });
  assert.ok((init.result?.capabilities as Record<string, unknown>).logging);

  await t.step("tools/list declares which tools take a task", async () => {
    const { result } = await mcp.request("tools/list");
    const tools = result!.tools as { name: string; execution?: { taskSupport?: string } }[];
    const support = Object.fromEntries(tools.map((t) => [t.name, t.execution?.taskSupport]));
    assert.equal(support.run_task, "optional");
    assert.equal(support.start_async_agent_task, undefined);
  });

  let taskId = "";
  await t.step("the call answers with a working task at once", async () => {
    const answer = await mcp.request("tools/call", {
      name: "run_task",
      arguments: { kind: "sleep", params: { ms: 600, tick_ms: 100 } },
      task: { ttl: 99_999_999 },
    });
    const task = answer.result!.task as Record<string, unknown>;
    taskId = String(task.taskId);
    assert.match(taskId, /^t_/);
    assert.equal(task.status, "working");
    assert.equal(task.ttl, 3_600_000, "ttl is bounded by KLYM_RETENTION_S");
    assert.equal(typeof task.pollInterval, "number");
    assert.ok(task.createdAt && task.lastUpdatedAt);
  });

  await t.step("tasks/get, tasks/list and check_task_status show the same task", async () => {
    const got = await mcp.request("tasks/get", { taskId });
    assert.equal(got.result!.taskId, taskId);
    const listed = await mcp.request("tasks/list");
    assert.ok((listed.result!.tasks as { taskId: string }[]).some((x) => x.taskId === taskId));
    const client = await klym.connect();
    const status = await call(client, "check_task_status", { task_id: taskId });
    assert.equal(status.kind, "sleep");
  });

  await t.step("tasks/result waits for the end and names the task", async () => {
    const answer = await mcp.request("tasks/result", { taskId });
    assert.equal(answer.id !== null, true);
    const result = answer.result!;
    assert.equal(result.isError, undefined);
    // The kind ticks every 100 ms or later (timers only ever run late): 600 ms hold 1 to 6 ticks,
    // and the count it returns is the count of lines it logged.
    const { slept, ticks } = (result.structuredContent as {
      result: { slept: number; ticks: number };
    }).result;
    assert.equal(slept, 600);
    assert.ok(Number.isInteger(ticks) && ticks >= 1 && ticks <= 6, `${ticks} ticks`);
    const client = await klym.connect();
    const status = await call<{ logs: { text: string }[] }>(client, "check_task_status", {
      task_id: taskId,
      max_log_lines: 100,
    });
    assert.deepEqual(
      status.logs.map((l) => l.text),
      Array.from({ length: ticks }, (_, i) => `tick ${i}`),
    );
    assert.deepEqual((result._meta as Record<string, unknown>)[RELATED], { taskId });
    const final = await mcp.request("tasks/get", { taskId });
    assert.equal(final.result!.status, "completed");
  });

  await t.step("tasks/cancel ends another task; a second cancel is refused", async () => {
    const answer = await mcp.request("tools/call", {
      name: "run_task",
      arguments: { kind: "sleep", params: { ms: 20_000 } },
      task: {},
    });
    const other = String((answer.result!.task as { taskId: string }).taskId);
    await poll(mcp, other, (s) => s === "working");
    const cancelled = await mcp.request("tasks/cancel", { taskId: other });
    assert.equal(cancelled.result!.status, "cancelled");
    const again = await mcp.request("tasks/cancel", { taskId: other });
    assert.equal(again.error?.code, -32602);
    const result = await mcp.request("tasks/result", { taskId: other });
    assert.equal(result.result!.isError, true);
  });

  await t.step("a tool without task support refuses a task-augmented call", async () => {
    const answer = await mcp.request("tools/call", { name: "list_tasks", arguments: {}, task: {} });
    assert.equal(answer.error?.code, -32601);
  });

  await t.step("unknown ids and cursors are invalid params", async () => {
    assert.equal((await mcp.request("tasks/get", { taskId: "t_nope" })).error?.code, -32602);
    assert.equal((await mcp.request("tasks/list", { cursor: "t_nope" })).error?.code, -32602);
  });
  await mcp.close();
});

Deno.test("tasks/list pages through many tasks with nextCursor", async () => {
  await using klym = await startKlym({ KLYM_MAX_CONCURRENT: "2" });
  const mcp = new RawMcp(klym.url);
  await mcp.initialize();
  for (let i = 0; i < 55; i++) {
    await mcp.request("tools/call", {
      name: "start_async_agent_task",
      arguments: { kind: "hello" },
    });
  }
  const first = await mcp.request("tasks/list");
  assert.equal((first.result!.tasks as unknown[]).length, 50);
  const cursor = String(first.result!.nextCursor);
  const second = await mcp.request("tasks/list", { cursor });
  assert.equal((second.result!.tasks as unknown[]).length, 5);
  assert.equal(second.result!.nextCursor, undefined);
  await mcp.close();
});

Deno.test("a task-augmented call sends notifications/tasks/status and progress for its token", async () => {
  const klym = await shared.server();
  const mcp = new RawMcp(klym.url);
  await mcp.initialize();
  // The standalone GET stream carries notifications not tied to a request.
  const controller = new AbortController();
  const stream = await fetch(`${klym.url}/mcp`, {
    headers: { ...mcp.headers(), accept: "text/event-stream" },
    signal: controller.signal,
  });
  assert.equal(stream.status, 200);
  const seen: RpcMessage[] = [];
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of stream.body!) {
        buffer += decoder.decode(chunk, { stream: true });
        const cut = buffer.lastIndexOf("\n\n");
        if (cut === -1) continue;
        for (const e of parseSse(buffer.slice(0, cut + 2))) {
          if (e.data) seen.push(JSON.parse(e.data));
        }
        buffer = buffer.slice(cut + 2);
      }
    } catch {
      // Aborted at the end.
    }
  })();
  const answer = await mcp.request("tools/call", {
    name: "run_task",
    arguments: { kind: "hello", prompt: "hi" },
    task: {},
    _meta: { progressToken: "tok-1" },
  });
  const taskId = String((answer.result!.task as { taskId: string }).taskId);
  await mcp.request("tasks/result", { taskId });
  const deadline = Date.now() + PATIENCE_MS;
  while (
    !seen.some((m) =>
      m.method === "notifications/tasks/status" && m.params?.status === "completed"
    ) && Date.now() < deadline
  ) await new Promise((r) => setTimeout(r, 50));
  controller.abort();
  await reading;
  const statuses = seen.filter((m) => m.method === "notifications/tasks/status");
  assert.ok(statuses.length >= 1, JSON.stringify(seen));
  assert.equal(statuses.at(-1)!.params!.taskId, taskId);
  assert.equal(statuses.at(-1)!.params!.status, "completed");
  const progress = seen.filter((m) => m.method === "notifications/progress");
  assert.ok(progress.length >= 1, JSON.stringify(seen));
  assert.equal(progress[0]!.params!.progressToken, "tok-1");
  assert.equal(progress[0]!.params!.progress, 1);
  await mcp.close();
});

Deno.test("a plain run_task waits, with progress and (after logging/setLevel) log lines on its own stream", async () => {
  const klym = await shared.server();
  const mcp = new RawMcp(klym.url);
  await mcp.initialize();
  assert.deepEqual((await mcp.request("logging/setLevel", { level: "info" })).result, {});
  const messages = await mcp.exchange("tools/call", {
    name: "run_task",
    arguments: { kind: "hello", prompt: "hi" },
    _meta: { progressToken: 7 },
  });
  const answer = messages.at(-1)!;
  assert.equal((answer.result!.structuredContent as { status: string }).status, "succeeded");
  const progress = messages.find((m) => m.method === "notifications/progress");
  assert.deepEqual(progress?.params, {
    progressToken: 7,
    progress: 1,
    total: 2,
    message: "half way",
  });
  const logs = messages.filter((m) => m.method === "notifications/message");
  const lines = logs.flatMap((m) =>
    (m.params!.data as { lines: { text: string }[] }).lines.map((l) => l.text)
  );
  assert.deepEqual(lines, ["hello from hello", "a warning", "{ nested: { n: 1 } }"]);
  await mcp.close();
});

Deno.test("log lines are not sent to a client that never chose a level", async () => {
  const klym = await shared.server();
  const mcp = new RawMcp(klym.url);
  await mcp.initialize();
  const messages = await mcp.exchange("tools/call", {
    name: "run_task",
    arguments: { kind: "hello" },
  });
  assert.equal(messages.filter((m) => m.method === "notifications/message").length, 0);
  await mcp.close();
});

Deno.test("each principal sees, reads and cancels only its own tasks", async () => {
  const alice = "alice-token-0123456789";
  const bob = "bob-token-0123456789ab";
  await using klym = await startKlym({ KLYM_AUTH_TOKENS: `alice:${alice},bob:${bob}` });
  const a = new RawMcp(klym.url, alice);
  const b = new RawMcp(klym.url, bob);
  await a.initialize();
  await b.initialize();
  const started = await a.request("tools/call", {
    name: "start_async_agent_task",
    arguments: { kind: "sleep", params: { ms: 20_000 } },
  });
  const taskId = String((started.result!.structuredContent as { task_id: string }).task_id);
  const native = await a.request("tools/call", {
    name: "run_task",
    arguments: { kind: "sleep", params: { ms: 20_000 } },
    task: {},
  });
  const nativeId = String((native.result!.task as { taskId: string }).taskId);

  for (const id of [taskId, nativeId]) {
    for (const tool of ["check_task_status", "cancel_task"]) {
      const answer = await b.request("tools/call", { name: tool, arguments: { task_id: id } });
      assert.equal(answer.result!.isError, true, `${tool} of alice's task by bob`);
      assert.match(JSON.stringify(answer.result!.content), /TASK_NOT_FOUND/);
    }
    for (const method of ["tasks/get", "tasks/cancel", "tasks/result"]) {
      assert.equal((await b.request(method, { taskId: id })).error?.code, -32602, method);
    }
  }
  const bobList = await b.request("tools/call", { name: "list_tasks", arguments: {} });
  assert.deepEqual((bobList.result!.structuredContent as { tasks: unknown[] }).tasks, []);
  assert.equal(
    (bobList.result!.structuredContent as { counts: { running: number } }).counts.running,
    0,
  );
  assert.deepEqual((await b.request("tasks/list")).result!.tasks, []);
  const aliceList = await a.request("tasks/list");
  assert.equal((aliceList.result!.tasks as unknown[]).length, 2);

  // Bob cannot use Alice's session either.
  const hijack = await fetch(`${klym.url}/mcp`, {
    method: "POST",
    headers: { ...a.headers(), authorization: `Bearer ${bob}` },
    body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list" }),
  });
  assert.equal(hijack.status, 404);
  assert.equal((await hijack.json()).id, 9);

  // Still Alice's: she cancels both.
  for (const id of [taskId, nativeId]) {
    const answer = await a.request("tools/call", {
      name: "cancel_task",
      arguments: { task_id: id },
    });
    assert.equal((answer.result!.structuredContent as { status: string }).status, "cancelled");
  }
  await a.close();
  await b.close();
});

Deno.test("JSON-RPC error answers carry the request's id", async () => {
  const klym = await shared.server();
  const res = await fetch(`${klym.url}/mcp`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-session-id": "no-such-session",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: "req-42", method: "tools/list" }),
  });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).id, "req-42");
  const noSession = await fetch(`${klym.url}/mcp`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 17, method: "tools/list" }),
  });
  assert.equal(noSession.status, 400);
  assert.equal((await noSession.json()).id, 17);
});

Deno.test("a call that waits is answered on an SSE stream with event ids and a retry hint, and a dropped stream can be replayed", async () => {
  const klym = await shared.server();
  const mcp = new RawMcp(klym.url);
  await mcp.initialize();
  const res = await mcp.post({
    id: 5,
    method: "tools/call",
    params: { name: "run_task", arguments: { kind: "hello" } },
  });
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const events = parseSse(await res.text());
  assert.ok(events.some((e) => e.retry !== undefined), "a retry hint");
  const answer = events.find((e) => e.data.includes('"id":5'));
  assert.ok(answer?.id, "the answer has an event id");
  const priming = events.find((e) => e.id && !e.data)!;
  const replay = await fetch(`${klym.url}/mcp`, {
    headers: { ...mcp.headers(), accept: "text/event-stream", "last-event-id": priming.id! },
  });
  assert.equal(replay.status, 200);
  const reader = replay.body!.getReader();
  let text = "";
  while (!text.includes('"id":5')) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  await reader.cancel();
  assert.match(text, /"structuredContent":\{"task_id"/);
  await mcp.close();
});

Deno.test("requests answered at once get one JSON object, the same answer the stream carried, and the log stays JSON lines", async () => {
  await using klym = await startKlym();
  const mcp = new RawMcp(klym.url);
  const init = await mcp.post(INITIALIZE);
  assert.equal(init.headers.get("content-type"), "application/json");
  mcp.sessionId = init.headers.get("mcp-session-id") ?? "";
  assert.ok(mcp.sessionId, "the session id travels with a JSON answer");
  assert.equal((await init.json()).result.serverInfo.name, "klym");
  await mcp.notify("notifications/initialized");
  const asked = async (message: Record<string, unknown>) => {
    const res = await mcp.post(message);
    return { type: res.headers.get("content-type"), body: await res.json() };
  };
  const started = await asked({
    id: "s",
    method: "tools/call",
    params: { name: "start_async_agent_task", arguments: { kind: "hello" } },
  });
  assert.equal(started.type, "application/json");
  const taskId = started.body.result.structuredContent.task_id;
  for (
    const [id, method, params] of [
      [2, "tools/list", {}],
      [3, "ping", {}],
      ["c", "tools/call", { name: "check_task_status", arguments: { task_id: taskId } }],
      [4, "tools/call", { name: "list_tasks", arguments: {} }],
      [5, "tasks/get", { taskId }],
    ] as const
  ) {
    const answer = await asked({ id, method, params });
    assert.equal(answer.type, "application/json", method);
    assert.equal(answer.body.id, id, method);
    assert.ok("result" in answer.body || "error" in answer.body, method);
  }
  // A refusal is an answer too; an unknown tool's is the SDK's.
  const refused = await asked({
    id: 6,
    method: "tools/call",
    params: { name: "check_task_status", arguments: { task_id: "t_none" } },
  });
  assert.equal(refused.type, "application/json");
  assert.equal(refused.body.result.isError, true);
  // A progress token asks for the stream, whatever the method.
  const streamed = await mcp.post({
    id: 7,
    method: "tools/list",
    params: { _meta: { progressToken: 1 } },
  });
  assert.equal(streamed.headers.get("content-type"), "text/event-stream");
  assert.match(await streamed.text(), /"tools":/);
  await mcp.close();
  // Reading a request's signal (to stop waiting once its client goes) must not make Deno print
  // its plain-text notice on the JSON log.
  klym.signal("SIGTERM");
  await klym.exited;
  for (const line of klym.logs) assert.doesNotThrow(() => JSON.parse(line), line);
});

Deno.test("an agent start is refused when the client's sampling does not take tools", async () => {
  const klym = await shared.server();
  const mcp = new RawMcp(klym.url);
  await mcp.initialize({ sampling: {} });
  const answer = await mcp.request("tools/call", {
    name: "start_async_agent_task",
    arguments: { prompt: "hi" },
  });
  assert.equal(answer.result!.isError, true);
  assert.match(JSON.stringify(answer.result!.content), /NO_MODEL: .*sampling\.tools/);
  await mcp.close();
  // With sampling.tools the same start is admitted.
  const withTools = new RawMcp(klym.url);
  await withTools.initialize({ sampling: { tools: {} } });
  const admitted = await withTools.request("tools/call", {
    name: "start_async_agent_task",
    arguments: { prompt: "hi", timeout_s: 1 },
  });
  assert.equal(admitted.result!.isError, undefined);
  await withTools.close();
});

Deno.test("llm_generate asks the client's model on the tools/call stream itself", async () => {
  const klym = await shared.server();
  const mcp = new RawMcp(klym.url);
  await mcp.initialize({ sampling: {} });
  // No GET stream is ever opened: the sampling request must come on the POST's own stream.
  const res = await mcp.post({
    id: 3,
    method: "tools/call",
    params: { name: "llm_generate", arguments: { prompt: "say hi" } },
  });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let answered = false;
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    for (const e of parseSse(text)) {
      if (!e.data) continue;
      const message = JSON.parse(e.data) as RpcMessage;
      if (message.method === "sampling/createMessage" && !answered) {
        answered = true;
        const reply = await mcp.post({
          id: message.id,
          result: { role: "assistant", content: { type: "text", text: "hi!" }, model: "m1" },
        });
        await reply.body?.cancel();
      }
    }
    if (text.includes('"id":3')) break;
  }
  await reader.cancel();
  assert.ok(answered, `a sampling request arrived on the POST stream: ${text}`);
  const final = parseSse(text).map((e) => e.data).filter(Boolean).map((d) => JSON.parse(d))
    .find((m: RpcMessage) => m.id === 3) as RpcMessage;
  assert.equal((final.result!.structuredContent as { text: string }).text, "hi!");
  await mcp.close();
});

Deno.test("the tool flow still works through the client SDK for each principal", async () => {
  const klym = await shared.server();
  const client = await klym.connect();
  const started = await call(client, "run_task", { kind: "hello", prompt: "p" });
  assert.equal(started.status, "succeeded");
  assert.match(await callError(client, "run_task", { kind: "fail" }), /failed/);
});

Deno.test("the native task flow works from the Python MCP SDK's tasks client", async () => {
  const klym = await shared.server();
  const python = new URL("../peers/.venv/bin/python", import.meta.url).pathname;
  const script = new URL("../peers/native_tasks_client.py", import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command(python, {
    args: [script, klym.url],
    stdout: "piped",
    stderr: "piped",
    ...OWN_SESSION,
  }).output();
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, err);
  const seen = JSON.parse(new TextDecoder().decode(stdout));
  assert.equal(seen.tasks_capability, true);
  assert.equal(seen.created_status, "working");
  assert.equal(seen.final_status, "completed");
  assert.equal(seen.result.status, "succeeded");
  assert.equal(seen.result.result.prompt, "from python");
  assert.equal(seen.listed, true);
  assert.equal(seen.cancelled_status, "cancelled");
});
