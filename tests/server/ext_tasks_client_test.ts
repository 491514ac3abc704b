/**
 * A native task flow from the TypeScript client SDK with the official tasks package
 * (`@modelcontextprotocol/ext-tasks`), as an assistant built on them would run it: start
 * `run_task` as a task, let the package poll it to its result, and cancel another.
 */
import assert from "node:assert/strict";
import {
  createTaskSessionFromClient,
  resultFromTaskOutcome,
} from "@modelcontextprotocol/ext-tasks/client";
import { call, startKlym } from "../helpers/klym_process.ts";

type Summary = { status: string; kind: string; result?: Record<string, unknown> };

Deno.test("the ext-tasks client runs, settles and cancels Klym tasks (protocol 2025-11-25)", async () => {
  await using klym = await startKlym();
  const client = await klym.connect("http");
  const session = createTaskSessionFromClient(client, { endpointId: "klym-test" });
  try {
    const execution = await session.callTool("run_task", { kind: "hello", prompt: "hi" }, {
      task: { preference: "require" },
    });
    assert.equal(execution.kind, "task", "run_task came back as a task, not an immediate result");
    const taskId = execution.handle!.taskId;
    const { outcome } = await execution.settle();
    assert.equal(outcome.status, "completed");
    const result = resultFromTaskOutcome(outcome) as unknown as { structuredContent: Summary };
    assert.equal(result.structuredContent.status, "succeeded");
    assert.deepEqual(result.structuredContent.result, { taskId, prompt: "hi", params: {} });
    // The same registry task, as the four tools see it.
    assert.equal(
      (await call<Summary>(client, "check_task_status", { task_id: taskId })).kind,
      "hello",
    );

    const long = await session.callTool("run_task", { kind: "sleep", params: { ms: 60_000 } }, {
      task: { preference: "require" },
    });
    assert.equal(long.kind, "task");
    await long.cancel();
    const cancelled = await call<Summary>(client, "check_task_status", {
      task_id: long.handle!.taskId,
    });
    assert.equal(cancelled.status, "cancelled");
  } finally {
    await session.close();
  }
});
