/** The `ctx` a task kind receives, in-process: what it sends its host is JSON data. */
import assert from "node:assert/strict";
import { createTaskContext } from "../../src/worker/task_context.ts";
import { HostLink } from "../../src/worker/host_link.ts";
import type { WorkerEvent } from "../../src/protocol.ts";

function context() {
  const posted: WorkerEvent[] = [];
  const task = new AbortController();
  const link = new HostLink((event) => posted.push(event), task.signal);
  const spec = {
    taskId: "t1",
    kind: "k",
    params: {},
    budget: { calls: 1, tokens: 1 },
  };
  return { ctx: createTaskContext(spec, task.signal, () => {}, link), posted };
}

Deno.test("ctx.save sends its value as JSON data", () => {
  const { ctx, posted } = context();
  void ctx.save({ at: new Date(0), skip: () => 1 });
  assert.deepEqual(posted, [{
    type: "grynya",
    id: 1,
    call: { op: "save", value: { at: "1970-01-01T00:00:00.000Z" } },
  }]);
});

Deno.test("ctx.save of what JSON cannot write rejects, sending nothing", async () => {
  const { ctx, posted } = context();
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  for (const value of [undefined, () => 1, { n: 1n }, cycle]) {
    // A promise either way: a throw here would escape the task's `.catch`.
    const saved = ctx.save(value);
    assert.ok(saved instanceof Promise);
    await assert.rejects(saved, TypeError);
  }
  assert.deepEqual(posted, []);
});
