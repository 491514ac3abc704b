/** The contract's flow driven through a real MCP client over each transport Klym serves. */
import assert from "node:assert/strict";
import type { Client } from "@modelcontextprotocol/client";
import {
  call,
  callError,
  connectStdio,
  type HttpTransportName,
  startKlym,
  type Status,
  waitFinal,
} from "../helpers/klym_process.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";

async function theContract(client: Client) {
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), [
    "cancel_task",
    "check_task_status",
    "list_models",
    "list_tasks",
    "llm_generate",
    "run_task",
    "start_async_agent_task",
  ]);
  for (const tool of tools) assert.ok(tool.outputSchema, `${tool.name} declares its output`);

  const before = performance.now();
  const started = await call(client, "start_async_agent_task", {
    kind: "sleep",
    params: { ms: 5000, tick_ms: 100 },
  });
  const startMs = performance.now() - before;
  assert.ok(startMs < 5000, `start returned in ${startMs} ms, before the 5 s task could end`);
  assert.match(String(started.task_id), /^t_/);
  assert.ok(["queued", "running"].includes(String(started.status)));

  // Logs arrive while the task runs.
  let running: Status | undefined;
  for (const deadline = Date.now() + PATIENCE_MS; Date.now() < deadline;) {
    running = await call<Status>(client, "check_task_status", { task_id: started.task_id });
    if (running.logs.length >= 3) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(running!.status, "running");
  assert.deepEqual(running!.logs.slice(0, 3).map((l) => l.text), ["tick 0", "tick 1", "tick 2"]);

  const listed = await call<{ tasks: { task_id: string; status: string }[] }>(
    client,
    "list_tasks",
    {
      status: "running",
    },
  );
  assert.ok(listed.tasks.some((t) => t.task_id === started.task_id));

  const cancelled = await call(client, "cancel_task", { task_id: started.task_id, reason: "test" });
  assert.equal(cancelled.status, "cancelled");
  const final = await waitFinal(client, String(started.task_id));
  assert.equal(final.status, "cancelled");
  assert.deepEqual(final.error, { code: "cancelled", message: "test" });

  const hello = await call(client, "start_async_agent_task", { kind: "hello", prompt: "hi" });
  const done = await waitFinal(client, String(hello.task_id));
  assert.equal(done.status, "succeeded");
  assert.deepEqual(done.result, { taskId: hello.task_id, prompt: "hi", params: {} });
  assert.deepEqual(done.allLogs.map((l) => [l.seq, l.stream, l.text]), [
    [1, "stdout", "hello from hello"],
    [2, "stderr", "a warning"],
    [3, "stdout", "{ nested: { n: 1 } }"],
  ]);
  assert.deepEqual(done.progress, { done: 1, total: 2, message: "half way" });
}

for (const transport of ["http", "sse"] as HttpTransportName[]) {
  Deno.test(`the task flow works over ${transport === "http" ? "Streamable HTTP" : "legacy SSE"}`, async () => {
    await using klym = await startKlym();
    await theContract(await klym.connect(transport));
  });
}

Deno.test("the task flow works over stdio", async () => {
  const client = await connectStdio();
  try {
    await theContract(client);
  } finally {
    await client.close();
  }
});

Deno.test("bad input gets a tool error naming the field and the fix", async () => {
  await using klym = await startKlym({ KLYM_MAX_TIMEOUT_S: "60", KLYM_DEFAULT_TIMEOUT_S: "60" });
  const client = await klym.connect();
  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      "check_task_status",
      { task_id: "t_missing" },
      /TASK_NOT_FOUND: No task "t_missing"; .*list_tasks/,
    ],
    ["cancel_task", { task_id: "t_missing" }, /TASK_NOT_FOUND/],
    ["check_task_status", {}, /task_id/],
    [
      "check_task_status",
      { task_id: 42 },
      /"task_id" must be the string returned by start_async_agent_task/,
    ],
    [
      "start_async_agent_task",
      { kind: "hello", timeout_s: "ten" },
      /"timeout_s" must be a number of seconds/,
    ],
    [
      "start_async_agent_task",
      { kind: "hello", timeout_s: 61 },
      /"timeout_s" must be at most 60 \(KLYM_MAX_TIMEOUT_S\)/,
    ],
    ["start_async_agent_task", { kind: "hello", timeout_s: 0 }, /"timeout_s" must be at least 1/],
    ["start_async_agent_task", { kind: "hello", timeout_s: 1.5 }, /whole number/],
    ["start_async_agent_task", { kind: "hello", params: [1, 2] }, /"params" must be a JSON object/],
    ["start_async_agent_task", { kind: "hello", prompt: 7 }, /"prompt" must be a string/],
    ["start_async_agent_task", { kind: "../../etc/passwd" }, /"kind" must be a name of letters/],
    ["start_async_agent_task", { kind: "nope" }, /unknown "kind" "nope"; known kinds: .*hello/],
    ["list_tasks", { status: "done" }, /status/],
    ["list_tasks", { limit: 0 }, /"limit" must be at least 1/],
    [
      "check_task_status",
      { task_id: "x", max_log_lines: 1001 },
      /"max_log_lines" must be at most 1000/,
    ],
  ];
  for (const [tool, args, pattern] of cases) {
    assert.match(await callError(client, tool, args), pattern, `${tool} ${JSON.stringify(args)}`);
  }
  const task = await call(client, "start_async_agent_task", { kind: "hello" });
  await waitFinal(client, String(task.task_id));
  assert.match(
    await callError(client, "check_task_status", { task_id: task.task_id, log_cursor: 4 }),
    /"log_cursor" 4 is past the task's last log line \(3\)/,
  );
  // None of the refused calls created a task: the one task listed is the hello that ran.
  const listed = await call<{ tasks: { task_id: string; status: string }[] }>(
    client,
    "list_tasks",
    {},
  );
  assert.deepEqual(listed.tasks.map((t) => [t.task_id, t.status]), [[task.task_id, "succeeded"]]);
});

Deno.test("a reader behind the log limit is told what it missed, and code_started_at is reported", async () => {
  await using klym = await startKlym({ KLYM_LOG_LIMIT_BYTES: "10240" });
  const client = await klym.connect();
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind: "print_lines",
    params: { lines: 500, width: 36 },
  });
  const final = await waitFinal(client, task_id);
  const first = await call<Status & { logs_missed: number; code_started_at: string }>(
    client,
    "check_task_status",
    { task_id, log_cursor: 0, max_log_lines: 1000 },
  );
  // 10240 bytes hold 102 lines of 36 characters (64 bytes of overhead each); lines dropped in the
  // task's host, before the server read them, count as dropped too and leave gaps in the numbers.
  const kept = first.logs.length;
  assert.ok(kept >= 1 && kept <= 102, `${kept} lines kept`);
  assert.equal(first.logs_dropped, 500 - kept);
  assert.equal(first.logs.at(-1)!.seq, 500, "the newest line is kept");
  let missed = 0;
  for (let cursor = 0; cursor < 500;) {
    const page = await call<Status & { logs_missed: number }>(client, "check_task_status", {
      task_id,
      log_cursor: cursor,
      max_log_lines: 1,
    });
    missed += page.logs_missed;
    assert.equal(page.logs.length, 1);
    cursor = page.next_log_cursor;
  }
  assert.equal(missed, 500 - kept, "a reader is told of every line it will never see");
  // Polling while it ran saw some lines before they were dropped: never a line twice, none out of order.
  const seqs = final.allLogs.map((l) => l.seq);
  assert.ok(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!), "strictly increasing");
  assert.equal(seqs.at(-1), 500);
  assert.ok(seqs.length >= 102);
  assert.ok(
    Date.parse(first.code_started_at) >=
      Date.parse((final as unknown as { started_at: string }).started_at),
  );
});
