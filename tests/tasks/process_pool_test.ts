import assert from "node:assert/strict";
import { type After, ProcessPool } from "../../src/tasks/process_pool.ts";
import type { ProcessOptions, TaskProcess } from "../../src/tasks/task_process.ts";

/** A stand-in for a task process: alive until killed, reusable unless told otherwise. */
function fakeProcess(pid: number): TaskProcess & { killed: boolean } {
  const exited = Promise.withResolvers<{ code: number; signal: null; stderrTail: string }>();
  const process = {
    pid,
    killed: false,
    reusable: true,
    exited: exited.promise,
    kill() {
      process.killed = true;
      process.reusable = false;
      exited.resolve({ code: 137, signal: null, stderrTail: "" });
    },
  };
  return process as unknown as TaskProcess & { killed: boolean };
}

/** An idle timer the test fires by hand. */
function manualAfter(): After & { fire(): void; readonly ms: number[] } {
  const pending = new Set<() => void>();
  const ms: number[] = [];
  const after: After = (wait, fn) => {
    ms.push(wait);
    pending.add(fn);
    return () => pending.delete(fn);
  };
  return Object.assign(after, {
    ms,
    fire: () => {
      const due = [...pending];
      pending.clear();
      due.forEach((fn) => fn());
    },
  });
}

function pool(idleHosts: number, after: After) {
  let next = 100;
  const spawned: (TaskProcess & { killed: boolean })[] = [];
  const pool = new ProcessPool({} as ProcessOptions, {
    warmSpares: 0,
    idleHosts,
    idleMs: 30_000,
    after,
    spawn: () => {
      const process = fakeProcess(next++);
      spawned.push(process);
      return process;
    },
  });
  return { pool, spawned };
}

Deno.test("a kept host goes to its own principal only, the one prepared for the kind first", async () => {
  const { pool: p, spawned } = pool(4, manualAfter());
  const a1 = p.acquire("alice").process;
  const a2 = p.acquire("alice").process;
  const held = { modulePath: "/snap/k.ts", released: 0, release: () => held.released++ };
  assert.ok(p.release(a1, "alice", held));
  assert.ok(p.release(a2, "alice", undefined));
  assert.equal(p.hasProcessFor("bob"), false);
  const bob = p.acquire("bob").process;
  assert.ok(bob !== a1 && bob !== a2, "bob never gets alice's host");
  const prepared = p.acquire("alice", "/snap/k.ts");
  assert.equal(prepared.process, a1, "the host prepared for the kind");
  assert.equal(prepared.prepared, held, "with the hold on its kind's snapshot, for the new task");
  assert.equal(held.released, 0, "held while it is idle, and still");
  assert.equal(p.acquire("alice", "/snap/other.ts").process, a2);
  assert.equal(spawned.length, 3);
  await p.close();
});

Deno.test("KLYM_IDLE_HOST_S ends a kept host; KLYM_IDLE_HOSTS ends the one idle longest", async () => {
  const after = manualAfter();
  const { pool: p, spawned } = pool(2, after);
  const [a, b, c] = [
    p.acquire("alice").process,
    p.acquire("bob").process,
    p.acquire("carol").process,
  ];
  p.release(a, "alice", undefined);
  p.release(b, "bob", undefined);
  assert.equal(p.idleCount, 2);
  p.release(c, "carol", undefined);
  assert.equal(p.idleCount, 2, "at the bound");
  assert.ok(spawned[0]!.killed, "alice's, idle longest, was ended");
  assert.deepEqual(after.ms, [30_000, 30_000, 30_000]);
  after.fire();
  assert.equal(p.idleCount, 0);
  assert.ok(spawned[1]!.killed && spawned[2]!.killed);
  await p.close();
});

Deno.test("a process that is not fit for another task is ended, not kept", async () => {
  const { pool: p } = pool(4, manualAfter());
  const a = p.acquire("alice").process as TaskProcess & { killed: boolean; reusable: boolean };
  a.reusable = false;
  assert.equal(p.release(a, "alice", undefined), false);
  assert.ok(a.killed);
  const { pool: none } = pool(0, manualAfter());
  const b = none.acquire("alice").process as TaskProcess & { killed: boolean };
  assert.equal(none.release(b, "alice", undefined), false, "KLYM_IDLE_HOSTS=0 keeps none");
  assert.ok(b.killed);
  await p.close();
  await none.close();
});

Deno.test("a kept host that broke its silence while idle does not count as a process ready", async () => {
  const { pool: p, spawned } = pool(4, manualAfter());
  const a = p.acquire("alice").process as TaskProcess & { reusable: boolean };
  assert.equal(p.release(a, "alice", undefined), true);
  assert.equal(p.hasProcessFor("alice"), true);
  a.reusable = false; // it wrote outside the protocol while idle
  assert.equal(p.hasProcessFor("alice"), false, "the task would wait for a spawn of its own");
  const next = p.acquire("alice").process;
  assert.notEqual(next, a);
  assert.equal(spawned.length, 2);
  await p.close();
});
