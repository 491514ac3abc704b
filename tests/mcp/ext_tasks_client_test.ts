/**
 * A native task flow from the TypeScript client SDK with the official tasks package
 * (`@modelcontextprotocol/ext-tasks`), as an assistant built on them would run it: start
 * `run_task` as a task, let the package poll it to its result, and cancel a CPU loop, in both
 * protocol eras, through a recording proxy that shows what went over the wire.
 */
import assert from "node:assert/strict";
import {
  createTaskSessionFromClient,
  resultFromTaskOutcome,
} from "@modelcontextprotocol/ext-tasks/client";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import {
  call,
  childPids,
  childrenLeft,
  type KlymProcess,
  startKlym,
  waitLogged,
} from "../helpers/klym_process.ts";
import { MODERN_VERSION, parseSse, TASKS_EXTENSION } from "../helpers/raw_mcp.ts";
import {
  answeredStatus,
  createdTaskId,
  startWireRecorder,
  type WireExchange,
  type WireRecorder,
} from "../helpers/wire_recorder.ts";

type Summary = { status: string; kind: string; result?: Record<string, unknown> };
type Era = "legacy" | "modern";

type TaskSession = ReturnType<typeof createTaskSessionFromClient>;

/** The package's session over the recorder, for a 2025-11-25 client or a 2026-07-28 one. */
async function session(era: Era, url: string): Promise<{ tasks: TaskSession; client: Client }> {
  if (era === "legacy") {
    const client = new Client({ name: "klym-ext-tasks-test", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`)));
    return { tasks: createTaskSessionFromClient(client, { endpointId: "klym-test" }), client };
  }
  const clientInfo = { name: "klym-ext-tasks-test", version: "1.0.0" };
  const clientCapabilities = { extensions: { [TASKS_EXTENSION]: {} } };
  const client = new Client(
    clientInfo,
    {
      capabilities: clientCapabilities,
      versionNegotiation: { mode: { pin: MODERN_VERSION } },
    } as ConstructorParameters<typeof Client>[1],
  );
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`)));
  assert.equal(client.getProtocolEra(), "modern");
  // The package sends the extension's requests itself, through the host's own dispatch.
  const rawDispatch = async (request: unknown) => {
    const { method, params } = request as { method: string; params?: Record<string, unknown> };
    const name = params?.name ?? params?.taskId;
    const res = await fetch(`${url}/mcp`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": MODERN_VERSION,
        "mcp-method": method,
        ...(typeof name === "string" ? { "mcp-name": name } : {}),
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: crypto.randomUUID(), ...(request as object) }),
    });
    const text = await res.text();
    const body = res.headers.get("content-type")?.includes("text/event-stream")
      ? parseSse(text).filter((e) => e.data).at(-1)!.data
      : text;
    return JSON.parse(body);
  };
  const tasks = createTaskSessionFromClient(client, {
    endpointId: "klym-test-modern",
    rawDispatch,
    v2RequestFraming: { protocolVersion: MODERN_VERSION, clientInfo, clientCapabilities },
  });
  return { tasks, client };
}

/** The `tools/call` of run_task with `kind` that the wire carried since `mark`. */
function runTaskCall(wire: WireRecorder, mark: number, kind: string): WireExchange {
  const calls = wire.exchanges.slice(mark).filter((e) =>
    e.method === "tools/call" && e.params.name === "run_task" &&
    (e.params.arguments as { kind?: string }).kind === kind
  );
  assert.equal(calls.length, 1, `one run_task call of kind ${kind}`);
  return calls[0]!;
}

async function flow(era: Era, klym: KlymProcess, wire: WireRecorder) {
  const observer = await klym.connect();
  const { tasks, client } = await session(era, wire.url);
  const mark = wire.exchanges.length;
  try {
    const execution = await tasks.callTool("run_task", { kind: "hello", prompt: "hi" }, {
      task: { preference: "require" },
    });
    assert.equal(execution.kind, "task", "run_task came back as a task, not an immediate result");
    const taskId = execution.handle!.taskId;
    const { outcome } = await execution.settle();
    assert.equal(outcome.status, "completed");
    const result = resultFromTaskOutcome(outcome) as unknown as { structuredContent: Summary };
    assert.equal(result.structuredContent.status, "succeeded");
    assert.deepEqual(result.structuredContent.result, { taskId, prompt: "hi", params: {} });
    // On the wire: a CreateTaskResult; then, in 2025, tasks/result (which waits for the end); in
    // 2026, which has no tasks/result, tasks/get polls up to the completed task.
    const created = runTaskCall(wire, mark, "hello");
    assert.equal(created.kind, "task");
    assert.equal(createdTaskId(created), taskId);
    if (era === "legacy") assert.ok("task" in created.params, "a task-augmented tools/call");
    else assert.equal(created.mcpName, "run_task");
    if (era === "legacy") {
      assert.equal(wire.requests("tasks/result", taskId)[0]?.kind, "complete");
    } else {
      const polls = wire.requests("tasks/get", taskId);
      assert.ok(polls.length >= 1, "the package polled with tasks/get");
      assert.equal(answeredStatus(polls.at(-1)!), "completed");
      assert.ok(polls.every((p) => p.mcpName === taskId), "each tasks/get names its task");
    }
    // The same registry task, as the four tools see it.
    assert.equal(
      (await call<Summary>(observer, "check_task_status", { task_id: taskId })).kind,
      "hello",
    );

    // A CPU loop: created, seen working through tasks/get, cancelled through tasks/cancel.
    const long = await tasks.callTool("run_task", { kind: "spin" }, {
      task: { preference: "require" },
    });
    assert.equal(long.kind, "task");
    const longId = long.handle!.taskId;
    assert.equal(runTaskCall(wire, mark, "spin").kind, "task");
    await waitLogged(observer, longId, /spinning/);
    const processes = childPids(klym.pid);
    assert.ok(processes.length > 0, "the CPU loop runs in a process of its own");
    const polledWorking = (e: WireExchange) =>
      e.method === "tasks/get" && e.params.taskId === longId && answeredStatus(e) === "working";
    for await (const event of long.updates()) {
      if (event.type === "task" && wire.exchanges.some(polledWorking)) break;
    }
    await long.cancel();
    const [cancel] = wire.requests("tasks/cancel", longId);
    assert.equal(cancel?.kind, "complete", JSON.stringify(cancel));
    if (era === "legacy") assert.equal(answeredStatus(cancel!), "cancelled");
    else assert.equal(cancel!.mcpName, longId);
    const cancelled = await call<Summary>(observer, "check_task_status", { task_id: longId });
    assert.equal(cancelled.status, "cancelled");
    assert.deepEqual(
      await childrenLeft(klym.pid, 10_000, processes),
      [],
      "the task's process is gone",
    );
  } finally {
    await tasks.close();
    await client.close();
    await observer.close();
  }
}

Deno.test("the ext-tasks client runs, polls and cancels Klym tasks in both eras, as the wire shows", async (t) => {
  // No spare processes: the server's children are the running tasks' processes.
  await using klym = await startKlym({ KLYM_WARM_SPARES: "0" });
  await using wire = await startWireRecorder(klym.url);
  await t.step("protocol 2025-11-25", () => flow("legacy", klym, wire));
  await t.step("protocol 2026-07-28, Tasks extension", () => flow("modern", klym, wire));
});
