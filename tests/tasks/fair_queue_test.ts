import assert from "node:assert/strict";
import { FairQueue } from "../../src/tasks/fair_queue.ts";

/** Takes every item, in the order the queue gives them. */
function drain<T>(queue: FairQueue<T>, eligible?: (principal: string) => boolean): T[] {
  const out: T[] = [];
  for (let item = queue.next(eligible); item !== undefined; item = queue.next(eligible)) {
    out.push(item);
  }
  return out;
}

Deno.test("one principal alone is served first in first out", () => {
  const queue = new FairQueue<string>();
  for (const item of ["a1", "a2", "a3"]) queue.push("alice", item);
  assert.deepEqual(drain(queue), ["a1", "a2", "a3"]);
  assert.equal(queue.size, 0);
});

Deno.test("principals take turns, each in its own arrival order", () => {
  const queue = new FairQueue<string>();
  for (const item of ["a1", "a2", "a3", "a4"]) queue.push("alice", item);
  for (const item of ["b1", "b2"]) queue.push("bob", item);
  queue.push("carol", "c1");
  assert.deepEqual(drain(queue), ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]);
});

Deno.test("a principal arriving behind another's long queue is served next", () => {
  const queue = new FairQueue<number>();
  for (let i = 0; i < 1000; i++) queue.push("alice", i);
  assert.deepEqual([queue.next(), queue.next(), queue.next()], [0, 1, 2]);
  queue.push("bob", -1);
  queue.push("bob", -2);
  assert.equal(queue.next(), -1, "bob's first item comes at the next turn");
  assert.equal(queue.next(), 3);
  assert.equal(queue.next(), -2);
  assert.equal(queue.next(), 4);
});

Deno.test("refilling a lane the moment it empties does not jump the others", () => {
  const queue = new FairQueue<string>();
  for (const item of ["a1", "a2", "a3"]) queue.push("alice", item);
  queue.push("carol", "c1");
  const order: string[] = [];
  for (let i = 0; i < 3; i++) {
    order.push(queue.next()!, queue.next()!);
    queue.push("carol", `c${i + 2}`);
  }
  assert.deepEqual(order, ["a1", "c1", "a2", "c2", "a3", "c3"]);
});

Deno.test("a principal passed over is owed one turn, not a backlog", () => {
  const queue = new FairQueue<string>();
  for (const item of ["a1", "a2", "a3"]) queue.push("alice", item);
  for (const item of ["b1", "b2", "b3", "b4"]) queue.push("bob", item);
  const bobOnly = (p: string) => p === "bob";
  assert.deepEqual([queue.next(bobOnly), queue.next(bobOnly), queue.next(bobOnly)], [
    "b1",
    "b2",
    "b3",
  ]);
  assert.deepEqual(drain(queue), ["a1", "b4", "a2", "a3"]);
});

Deno.test("nothing is taken when no waiting principal is eligible", () => {
  const queue = new FairQueue<string>();
  queue.push("alice", "a1");
  assert.equal(queue.hasNext((p) => p !== "alice"), false);
  assert.equal(queue.next((p) => p !== "alice"), undefined);
  assert.equal(queue.size, 1);
  assert.equal(queue.hasNext(), true);
});

Deno.test("remove takes any item out and keeps counts and bytes exact", () => {
  const queue = new FairQueue<string>();
  queue.push("alice", "a1", 10);
  queue.push("alice", "a2", 20);
  queue.push("bob", "b1", 5);
  queue.push("alice", "a2", 20);
  assert.deepEqual([queue.size, queue.bytes, queue.sizeOf("alice"), queue.bytesOf("alice")], [
    3,
    35,
    2,
    30,
  ]);
  assert.equal(queue.remove("alice", "a2"), true);
  assert.equal(queue.remove("alice", "a2"), false, "a second removal finds nothing");
  assert.equal(queue.remove("bob", "a1"), false, "only from its own principal's lane");
  assert.deepEqual([queue.size, queue.bytes, queue.bytesOf("alice")], [2, 15, 10]);
  assert.deepEqual([...queue].sort(), ["a1", "b1"]);
  assert.deepEqual(drain(queue), ["a1", "b1"]);
  assert.deepEqual([queue.size, queue.bytes, queue.sizeOf("bob"), queue.bytesOf("bob")], [
    0,
    0,
    0,
    0,
  ]);
});

Deno.test("after 99,999 removals from the front the last item is next", () => {
  const queue = new FairQueue<number>();
  const n = 100_000;
  for (let i = 0; i < n; i++) queue.push("alice", i);
  for (let i = 0; i < n - 1; i++) queue.remove("alice", i);
  assert.equal(queue.next(), n - 1);
});
