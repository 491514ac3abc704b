/**
 * Retention of finished tasks is shared fairly across principals: beyond KLYM_MAX_FINISHED or
 * KLYM_RETAINED_BYTES the principal holding the most gives way, so one principal's many or large
 * tasks cannot make another's results vanish.
 */
import assert from "node:assert/strict";
import { MemoryJournal } from "../../src/journal/memory_journal.ts";
import { LogBuffer } from "../../src/tasks/log_buffer.ts";
import { type LiveTask, TaskStore } from "../../src/tasks/task_store.ts";
import { RESULT_IN_JOURNAL_BYTES } from "../../src/tasks/task_state.ts";

let clock = 1_000;
let next = 0;

/** A task of `owner` that has just succeeded with `result`. */
function finished(store: TaskStore, owner: string, result = "1"): LiveTask {
  const at = clock++;
  const task: LiveTask = {
    id: `t_${owner}_${next++}`,
    owner,
    kind: "hello",
    modulePath: undefined,
    model: undefined,
    prompt: undefined,
    params: {},
    budget: { calls: 0, tokens: 0 },
    timeoutS: 60,
    createdAt: at,
    logs: new LogBuffer(1024),
    state: { status: "queued", queuedAt: at },
    progress: undefined,
    codeStartedAt: undefined,
    saves: [],
  };
  store.add(task);
  task.state = { status: "succeeded", startedAt: at, finishedAt: at, resultJson: result };
  store.changed(task);
  return task;
}

function withStore(
  limits: { maxFinished: number; retainedBytes: number },
  fn: (store: TaskStore) => void,
): void {
  const store = new TaskStore(new MemoryJournal(), {
    limits: { retentionS: 3600, ...limits },
    now: () => clock,
  });
  try {
    fn(store);
  } finally {
    store.close();
  }
}

const ids = (store: TaskStore, owner: string) =>
  store.list(undefined, Infinity, owner).map((t) => t.id).reverse();

Deno.test("beyond KLYM_MAX_FINISHED the principal holding the most finished tasks gives way", () => {
  withStore({ maxFinished: 3, retainedBytes: 1 << 30 }, (store) => {
    const bob = finished(store, "bob");
    const alice = Array.from({ length: 10 }, () => finished(store, "alice"));
    assert.deepEqual(ids(store, "bob"), [bob.id], "bob's result outlives alice's flood");
    assert.deepEqual(ids(store, "alice"), alice.slice(-2).map((t) => t.id), "her newest stay");
    assert.equal(store.list(undefined, Infinity).length, 3);
  });
});

Deno.test("beyond KLYM_RETAINED_BYTES the principal holding the most bytes gives way", () => {
  withStore({ maxFinished: 1000, retainedBytes: 2_000 }, (store) => {
    const bob = finished(store, "bob", '"small"');
    const big = `"${"x".repeat(600)}"`;
    const alice = Array.from({ length: 5 }, () => finished(store, "alice", big));
    assert.deepEqual(ids(store, "bob"), [bob.id]);
    assert.deepEqual(ids(store, "alice"), alice.slice(-3).map((t) => t.id));
  });
});

Deno.test("one principal alone loses its oldest finished tasks first, as before", () => {
  withStore({ maxFinished: 2, retainedBytes: 1 << 30 }, (store) => {
    const tasks = Array.from({ length: 5 }, () => finished(store, "local"));
    assert.deepEqual(ids(store, "local"), tasks.slice(-2).map((t) => t.id));
  });
});

Deno.test("without a journal that keeps results, a large one is held as UTF-8 bytes and reads back whole", () => {
  withStore({ maxFinished: 100, retainedBytes: 1 << 30 }, (store) => {
    const text = JSON.stringify({ text: "é€😀 ".repeat(RESULT_IN_JOURNAL_BYTES) });
    const large = finished(store, "local", text);
    const held = Object.getOwnPropertyDescriptor(large.state, "resultJson");
    assert.equal(held?.value, undefined, "not kept as a string");
    assert.ok(held?.get, "read from its bytes when asked");
    assert.equal(large.state.status === "succeeded" && large.state.resultJson, text);
    const small = finished(store, "local", '"small"');
    assert.equal(Object.getOwnPropertyDescriptor(small.state, "resultJson")?.value, '"small"');
  });
});
