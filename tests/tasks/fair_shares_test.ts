/** Several principals on one registry: turns across them, and each one's share of queue and slots. */
import assert from "node:assert/strict";
import { KlymError } from "../../src/errors.ts";
import type { TaskRegistry } from "../../src/tasks/task_registry.ts";
import { makeRegistry, settled } from "../helpers/registry.ts";

const rejects = (fn: () => unknown, pattern: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KlymError, String(e));
    assert.equal(e.code, "QUEUE_FULL");
    assert.match(e.message, pattern);
    return true;
  });

/** The ids of tasks in the order they became `running`. */
function runningOrder(registry: TaskRegistry): string[] {
  const order: string[] = [];
  registry.events.subscribe((change) => {
    if (change.type !== "task" || order.includes(change.id)) return;
    if (registry.get(change.id).state.status === "running") order.push(change.id);
  });
  return order;
}

/** Resolves when `ready()` holds, checked at each change of the registry's tasks. */
function until(registry: TaskRegistry, ready: () => boolean): Promise<void> {
  if (ready()) return Promise.resolve();
  const { promise, resolve } = Promise.withResolvers<void>();
  const stop = registry.events.subscribe(() => {
    if (ready()) (stop(), resolve());
  });
  return promise;
}

async function cancelAll(registry: TaskRegistry): Promise<void> {
  for (const task of registry.list(undefined, Infinity)) registry.cancel(task.id);
  await registry.whenIdle();
}

Deno.test("bob's first task runs at the next free slot however many tasks alice has queued", async () => {
  await using registry = makeRegistry({ KLYM_MAX_CONCURRENT: "1" });
  const order = runningOrder(registry);
  const gate = registry.start({ kind: "cooperative", owner: "alice" });
  const alice = Array.from({ length: 5 }, () => registry.start({ kind: "hello", owner: "alice" }));
  await until(registry, () => gate.state.status === "running");
  const bob = [0, 1].map(() => registry.start({ kind: "hello", owner: "bob" }));
  registry.cancel(gate.id);
  for (const task of [...alice, ...bob]) {
    assert.equal((await settled(task)).state.status, "succeeded");
  }
  const [a1, a2, a3, a4, a5] = alice.map((t) => t.id);
  const [b1, b2] = bob.map((t) => t.id);
  assert.deepEqual(order, [gate.id, b1, a1, b2, a2, a3, a4, a5], "turns across, FIFO within");
});

Deno.test("KLYM_MAX_QUEUED holds per principal at its edge and KLYM_MAX_QUEUED_TOTAL for all", async () => {
  await using registry = makeRegistry({
    KLYM_MAX_CONCURRENT: "1",
    KLYM_MAX_QUEUED: "2",
    KLYM_MAX_QUEUED_TOTAL: "3",
  });
  const gate = registry.start({ kind: "cooperative", owner: "alice" });
  await until(registry, () => gate.state.status === "running");
  const alice = [0, 1].map(() => registry.start({ kind: "hello", owner: "alice" }));
  rejects(
    () => registry.start({ kind: "hello", owner: "alice" }),
    /^Cannot start task: principal "alice" has 2 tasks queued; its queue limit is 2 \(KLYM_MAX_QUEUED\); wait for some to finish or cancel some$/,
  );
  const bob = registry.start({ kind: "hello", owner: "bob" });
  assert.equal(bob.state.status, "queued", "alice's full share leaves bob room");
  rejects(
    () => registry.start({ kind: "hello", owner: "bob" }),
    /3 tasks are queued across all principals \(principal "bob" has 1\), the total queue limit is 3 \(KLYM_MAX_QUEUED_TOTAL\)/,
  );
  registry.cancel(alice[1]!.id);
  assert.equal(registry.start({ kind: "hello", owner: "bob" }).state.status, "queued");
  await cancelAll(registry);
});

Deno.test("queued prompt and params bytes hold per principal and in total at their edge", async () => {
  await using registry = makeRegistry({
    KLYM_MAX_CONCURRENT: "1",
    KLYM_MAX_PROMPT_BYTES: "512",
    KLYM_MAX_PARAMS_BYTES: "512",
    KLYM_MAX_QUEUED_BYTES: "1024",
    KLYM_MAX_QUEUED_BYTES_TOTAL: "1536",
  });
  // The gate's bytes are released when it leaves the queue for its slot.
  const gate = registry.start({ kind: "cooperative", owner: "alice", prompt: "x".repeat(500) });
  await until(registry, () => gate.state.status === "running");
  // "é" is 2 bytes in UTF-8; params {} are 2 bytes as JSON: 255 × 2 + 2 = 512 bytes each.
  const prompt = "é".repeat(255);
  const alice = [0, 1].map(() => registry.start({ kind: "hello", owner: "alice", prompt }));
  rejects(
    () => registry.start({ kind: "hello", owner: "alice" }),
    /principal "alice" has 1024 bytes of prompts and params queued and this task brings 2, the limit per principal is 1024 \(KLYM_MAX_QUEUED_BYTES\)/,
  );
  registry.start({ kind: "hello", owner: "bob", params: { p: "x".repeat(502) } }); // 510 bytes
  registry.start({ kind: "hello", owner: "bob" }); // the total is 1536, at its limit
  rejects(
    () => registry.start({ kind: "hello", owner: "bob" }),
    /1536 bytes of prompts and params are queued across all principals \(principal "bob" has 512\) and this task brings 2, the total limit is 1536 \(KLYM_MAX_QUEUED_BYTES_TOTAL\)/,
  );
  registry.cancel(alice[0]!.id);
  assert.equal(registry.start({ kind: "hello", owner: "bob" }).state.status, "queued");
  await cancelAll(registry);
});

Deno.test("a principal at KLYM_MAX_RUNNING_PER_PRINCIPAL leaves the free slot to another", async () => {
  await using registry = makeRegistry({
    KLYM_MAX_CONCURRENT: "3",
    KLYM_MAX_RUNNING_PER_PRINCIPAL: "2",
  });
  const alice = [0, 1, 2].map(() => registry.start({ kind: "cooperative", owner: "alice" }));
  await until(registry, () => registry.counts().running === 2);
  const bob = registry.start({ kind: "cooperative", owner: "bob" });
  await until(registry, () => bob.state.status === "running");
  assert.deepEqual(alice.map((t) => t.state.status), ["running", "running", "queued"]);
  registry.cancel(alice[0]!.id);
  await until(registry, () => alice[2]!.state.status === "running");
  assert.equal(registry.counts().running, 3);
  await cancelAll(registry);
});
