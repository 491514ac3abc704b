import assert from "node:assert/strict";
import { type TaskState, transition } from "../../src/tasks/task_state.ts";
import { isKlymError } from "../../src/errors.ts";

const queued: TaskState = { status: "queued", queuedAt: 1 };
const running: TaskState = { status: "running", queuedAt: 1, startedAt: 2 };
const failure = { code: "x", message: "y" };

Deno.test("a task moves queued → running → each terminal state", () => {
  assert.equal(transition(queued, running).status, "running");
  for (const status of ["failed", "cancelled", "timed_out"] as const) {
    assert.equal(
      transition(running, { status, startedAt: 2, finishedAt: 3, error: failure }).status,
      status,
    );
  }
  assert.equal(
    transition(running, { status: "succeeded", startedAt: 2, finishedAt: 3, resultJson: "1" })
      .status,
    "succeeded",
  );
});

Deno.test("a queued task can be cancelled but cannot succeed or time out", () => {
  const cancelled = {
    status: "cancelled",
    startedAt: undefined,
    finishedAt: 3,
    error: failure,
  } as const;
  assert.equal(transition(queued, cancelled).status, "cancelled");
  assert.throws(
    () =>
      transition(queued, {
        status: "succeeded",
        startedAt: undefined,
        finishedAt: 3,
        resultJson: "1",
      }),
    (e: unknown) => isKlymError(e, "ILLEGAL_TRANSITION"),
  );
  assert.throws(
    () =>
      transition(queued, {
        status: "timed_out",
        startedAt: undefined,
        finishedAt: 3,
        error: failure,
      }),
    (e: unknown) => isKlymError(e, "ILLEGAL_TRANSITION"),
  );
});

Deno.test("terminal states never change", () => {
  const done: TaskState = { status: "succeeded", startedAt: 2, finishedAt: 3, resultJson: "1" };
  for (const next of [queued, running, { ...done }]) {
    assert.throws(() => transition(done, next), /cannot go from succeeded/);
  }
  const cancelled: TaskState = { status: "cancelled", startedAt: 2, finishedAt: 3, error: failure };
  assert.throws(() => transition(cancelled, done), /cannot go from cancelled to succeeded/);
});
