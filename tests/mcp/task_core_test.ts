/** The MCP task core both eras share, in-process over a fake task source (no task process). */
import assert from "node:assert/strict";
import { ProtocolError } from "@modelcontextprotocol/server";
import { McpTaskCore, type TaskSource } from "../../src/mcp/task_core.ts";
import { KlymError } from "../../src/errors.ts";
import { TaskEvents } from "../../src/tasks/task_events.ts";
import type { TaskRecord } from "../../src/tasks/task_registry.ts";
import type { TaskState } from "../../src/tasks/task_state.ts";

const RETENTION_MS = 60_000;
const T0 = Date.UTC(2026, 0, 1);

function record(id: string, state: TaskState = { status: "running", queuedAt: T0, startedAt: T0 }) {
  return {
    id,
    owner: "alice",
    kind: "echo",
    createdAt: T0,
    state,
    progress: undefined,
    codeStartedAt: undefined,
    saves: [],
  } as Partial<TaskRecord> as TaskRecord;
}

/** A task source holding `tasks` for alice; other principals find none. */
function source(...tasks: TaskRecord[]): TaskSource & { events: TaskEvents } {
  return {
    events: new TaskEvents(),
    get(id: string, owner?: string) {
      const task = tasks.find((t) => t.id === id && t.owner === owner);
      if (!task) throw new KlymError("TASK_NOT_FOUND", `No task "${id}"`);
      return task;
    },
  };
}

const finished = (status: "failed" | "cancelled" | "timed_out" | "interrupted"): TaskState => ({
  status,
  startedAt: T0,
  finishedAt: T0 + 5,
  error: { code: "BOOM", message: "it broke" },
});

Deno.test("the status view maps every registry status onto MCP's", () => {
  const core = new McpTaskCore(source(), { retentionMs: RETENTION_MS });
  const cases: [TaskState, string][] = [
    [{ status: "queued", queuedAt: T0 }, "working"],
    [{ status: "running", queuedAt: T0, startedAt: T0 }, "working"],
    [{ status: "succeeded", startedAt: T0, finishedAt: T0 + 5, resultJson: "1" }, "completed"],
    [finished("failed"), "failed"],
    [finished("timed_out"), "failed"],
    [finished("interrupted"), "failed"],
    [finished("cancelled"), "cancelled"],
  ];
  for (const [state, status] of cases) {
    const view = core.view(record("t1", state));
    assert.equal(view.status, status, state.status);
    assert.equal(view.ttl, RETENTION_MS);
    assert.equal(view.createdAt, new Date(T0).toISOString());
    if ("error" in state) assert.equal(view.statusMessage, "BOOM: it broke");
    if ("finishedAt" in state) assert.equal(view.lastUpdatedAt, new Date(T0 + 5).toISOString());
  }
});

Deno.test("a task waiting on its client is input_required to that client's era only, until answered", async () => {
  const task = record("t1");
  const core = new McpTaskCore(source(task), { retentionMs: RETENTION_MS });
  const inputs = core.inputs(task);

  inputs.asked(1); // a 2025 session's sampling request went out
  assert.equal(core.status(task, "legacy"), "input_required");
  assert.equal(core.status(task, "modern"), "working");
  assert.match(core.view(task).statusMessage ?? "", /waiting for the client's model/);
  inputs.asked(-1);
  assert.equal(core.status(task), "working");

  const request = { method: "sampling/createMessage", params: { maxTokens: 10 } };
  const abort = new AbortController();
  const answered = inputs.park(request, abort.signal, 60_000);
  assert.equal(core.status(task, "modern"), "input_required");
  assert.equal(core.status(task, "legacy"), "working");
  assert.deepEqual(inputs.outstanding(), { "sampling-createMessage-1": request });
  inputs.answer({ "sampling-createMessage-9": "ignored", "sampling-createMessage-1": { ok: 1 } });
  assert.deepEqual(await answered, { ok: 1 });
  assert.equal(core.status(task, "modern"), "working");
  assert.deepEqual(inputs.outstanding(), {});
});

Deno.test("parked input keys are never reused, and an abort or the timeout ends the wait", async () => {
  const task = record("t1");
  const inputs = new McpTaskCore(source(task), { retentionMs: RETENTION_MS }).inputs(task);
  const request = { method: "sampling/createMessage", params: {} };

  const abort = new AbortController();
  const aborted = inputs.park(request, abort.signal, 60_000);
  abort.abort(new Error("task cancelled"));
  await assert.rejects(aborted, /task cancelled/);

  const timedOut = inputs.park(request, new AbortController().signal, 1);
  assert.deepEqual(Object.keys(inputs.outstanding()), ["sampling-createMessage-2"]);
  await assert.rejects(
    timedOut,
    /The client did not answer sampling\/createMessage \(sampling-createMessage-2\) within 1 ms/,
  );
  assert.deepEqual(inputs.outstanding(), {});
});

Deno.test("two cores keep their own links: nothing is shared through module state", () => {
  const task = record("t1");
  const first = new McpTaskCore(source(task), { retentionMs: RETENTION_MS });
  const second = new McpTaskCore(source(task), { retentionMs: 5_000 });
  first.inputs(task).asked(1);
  first.grantTtl(task, 1_000);
  assert.equal(first.status(task), "input_required");
  assert.equal(first.view(task).ttl, 1_000);
  assert.equal(second.status(task), "working");
  assert.equal(second.view(task).ttl, 5_000);
});

Deno.test("the ttl granted is the one asked for, bounded by KLYM_RETENTION_S", () => {
  const task = record("t1");
  const core = new McpTaskCore(source(task), { retentionMs: RETENTION_MS });
  for (
    const [asked, granted] of [[2_500.7, 2_500], [10 * RETENTION_MS, RETENTION_MS], [
      -1,
      RETENTION_MS,
    ], ["9", RETENTION_MS]] as const
  ) {
    core.grantTtl(task, asked);
    assert.equal(core.view(task).ttl, granted, `asked ${asked}`);
  }
});

Deno.test("a task's result is run_task's unless its start named another; a refused start is a tool error", async () => {
  const succeeded: TaskState = {
    status: "succeeded",
    startedAt: T0,
    finishedAt: T0,
    resultJson: '{"n":1}',
  };
  const plain = record("t1", succeeded);
  const named = record("t2", succeeded);
  const core = new McpTaskCore(source(plain, named), { retentionMs: RETENTION_MS });

  assert.deepEqual(await core.start(Promise.resolve({ task: plain })), { task: plain });
  const custom = { content: [{ type: "text" as const, text: "custom" }] };
  await core.start(Promise.resolve({ task: named, resultOf: () => custom }));
  assert.deepEqual(core.resultOf(named), custom);
  const standard = core.resultOf(plain);
  assert.equal(standard.isError, undefined);
  const structured = standard.structuredContent as Record<string, unknown> | undefined;
  assert.deepEqual(structured?.result, { n: 1 });
  assert.equal(structured?.task_id, "t1");

  const refused = await core.start(Promise.reject(new KlymError("QUEUE_FULL", "Queue is full")));
  assert.deepEqual(refused, {
    refused: { isError: true, content: [{ type: "text", text: "QUEUE_FULL: Queue is full" }] },
  });
  await assert.rejects(core.start(Promise.reject(new RangeError("a bug"))), RangeError);
});

Deno.test("find answers invalid params for an unknown task or another principal's", () => {
  const task = record("t1");
  const core = new McpTaskCore(source(task), { retentionMs: RETENTION_MS });
  assert.equal(core.find("t1", "alice"), task);
  for (const [id, owner] of [["t1", "bob"], ["t9", "alice"]]) {
    assert.throws(() => core.find(id!, owner!), (error: unknown) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.code, -32602);
      assert.match(error.message, new RegExp(`no task "${id}" \\(never existed, not yours`));
      return true;
    });
  }
});

Deno.test("a sampling request travels with the latest request of its session waiting on the task", () => {
  const task = record("t1");
  const core = new McpTaskCore(source(task), { retentionMs: RETENTION_MS });
  const session = {};
  const other = {};
  assert.equal(core.waitingRequest(task, session), undefined);
  const doneFirst = core.markWaiting(task, session, 1);
  const doneSecond = core.markWaiting(task, session, 2);
  assert.equal(core.waitingRequest(task, session), 2);
  assert.equal(core.waitingRequest(task, other), undefined);
  doneSecond();
  assert.equal(core.waitingRequest(task, session), 1);
  doneFirst();
  assert.equal(core.waitingRequest(task, session), undefined);
  assert.equal(core.waitingRequest(undefined, session), undefined);
});

Deno.test("whenFinal resolves on the task's final change and rejects when its signal aborts", async () => {
  const task = record("t1");
  const tasks = source(task);
  const core = new McpTaskCore(tasks, { retentionMs: RETENTION_MS });

  const final = core.whenFinal(task, new AbortController().signal);
  tasks.events.emit({ type: "task", id: "t1" }); // still running: not final yet
  let settled = false;
  final.then(() => (settled = true));
  await Promise.resolve();
  assert.equal(settled, false);
  task.state = finished("cancelled");
  tasks.events.emit({ type: "task", id: "t1" });
  await final;
  assert.equal(tasks.events.listenerCount, 0);

  const waiting = record("t2");
  const abort = new AbortController();
  const aborted = core.whenFinal(waiting, abort.signal);
  abort.abort(new Error("the call was cancelled"));
  await assert.rejects(aborted, /the call was cancelled/);
  assert.equal(tasks.events.listenerCount, 0);
});

Deno.test("whenFinalOrAsking resolves when the task parks a request for its 2026 client, or ends", async () => {
  const task = record("t1");
  const tasks = source(task);
  const core = new McpTaskCore(tasks, { retentionMs: RETENTION_MS });
  const inputs = core.inputs(task);

  const waiting = core.whenFinalOrAsking(task, new AbortController().signal);
  inputs.asked(1); // a 2025 session's request is not this era's: still waiting
  tasks.events.emit({ type: "task", id: "t1" });
  let settled = false;
  waiting.then(() => (settled = true));
  await Promise.resolve();
  assert.equal(settled, false);
  const abort = new AbortController();
  const answered = inputs.park(
    { method: "sampling/createMessage", params: {} },
    abort.signal,
    60_000,
  );
  assert.equal(await waiting, "asking");
  // Already asking: resolves at once; once answered and final, "final".
  assert.equal(await core.whenFinalOrAsking(task, new AbortController().signal), "asking");
  inputs.answer({ "sampling-createMessage-1": {} });
  await answered;
  task.state = finished("failed");
  assert.equal(await core.whenFinalOrAsking(task, new AbortController().signal), "final");
  assert.equal(tasks.events.listenerCount, 0);
});
