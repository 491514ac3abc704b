import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { type After, IDLE_CPU_CHECK_MS, ProcessPool } from "../../src/tasks/process_pool.ts";
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

/** CPU times the test sets per pid (ms); a pid it never set cannot be read, as without /proc. */
function fakeCpu() {
  const ms = new Map<number, number | undefined>();
  return { ms, read: (process: TaskProcess) => ms.get(process.pid) };
}

/** A repeating timer the test ticks by hand. */
function manualEvery() {
  const running = new Set<() => void>();
  const every = (ms: number, tick: () => void) => {
    assert.equal(ms, IDLE_CPU_CHECK_MS);
    running.add(tick);
    return () => running.delete(tick);
  };
  return Object.assign(every, {
    running: () => running.size,
    tick: () => [...running].forEach((tick) => tick()),
  });
}

/** The pool's warnings, kept until disposed. */
async function poolWarnings(): Promise<{ records: LogRecord[] } & AsyncDisposable> {
  const records: LogRecord[] = [];
  await configure({
    sinks: { test: (record) => records.push(record) },
    loggers: [
      { category: ["klym", "pool"], sinks: ["test"], lowestLevel: "warning" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  return { records, [Symbol.asyncDispose]: reset };
}

function pool(
  idleHosts: number,
  after: After,
  cpu = fakeCpu(),
  every = manualEvery(),
  idleCpuMs = 1000,
) {
  let next = 100;
  const spawned: (TaskProcess & { killed: boolean })[] = [];
  const pool = new ProcessPool({} as ProcessOptions, {
    warmSpares: 0,
    idleHosts,
    idleMs: 30_000,
    after,
    idleCpuMs,
    cpuTime: cpu.read,
    every,
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

Deno.test("KLYM_IDLE_HOST_CPU_MS: a kept host whose CPU grew by the bound is kept, one ms more ends it", async () => {
  const cpu = fakeCpu();
  const every = manualEvery();
  await using warnings = await poolWarnings();
  const { pool: p, spawned } = pool(4, manualAfter(), cpu, every, 1000);
  const a = p.acquire("alice").process;
  const b = p.acquire("alice").process;
  cpu.ms.set(a.pid, 5_000); // CPU its tasks used: only what it uses while idle counts
  cpu.ms.set(b.pid, 7_000);
  assert.equal(every.running(), 0, "no check without kept hosts");
  p.release(a, "alice", undefined);
  p.release(b, "alice", undefined);
  assert.equal(every.running(), 1, "one check for all kept hosts");
  cpu.ms.set(a.pid, 5_000 + 24); // preparing its Worker
  cpu.ms.set(b.pid, 7_000 + 24);
  every.tick();
  assert.equal(p.idleCount, 2);
  cpu.ms.set(a.pid, 6_000); // exactly the bound
  cpu.ms.set(b.pid, 8_001); // one ms past it
  every.tick();
  assert.equal(p.idleCount, 1);
  assert.equal(spawned[0]!.killed, false, "at the bound: kept");
  assert.equal(spawned[1]!.killed, true, "past it: ended");
  assert.equal(warnings.records.length, 1);
  assert.deepEqual(warnings.records[0]!.properties, {
    pid: b.pid,
    principal: "alice",
    usedMs: 1001,
    limitMs: 1000,
  });
  assert.equal(p.acquire("alice").process, a);
  assert.equal(every.running(), 0, "no check once no host is kept");
  const next = p.acquire("alice").process;
  assert.ok(next !== a && next !== b, "the ended host is never handed out");
  assert.equal(spawned.length, 3);
  await p.close();
});

Deno.test("a kept host whose CPU time cannot be read is bounded by KLYM_IDLE_HOST_S only; one that stops reading is dropped", async () => {
  const cpu = fakeCpu();
  const every = manualEvery();
  const after = manualAfter();
  const { pool: p, spawned } = pool(4, after, cpu, every);
  const unread = p.acquire("alice").process; // no /proc here: never read
  const gone = p.acquire("alice").process;
  cpu.ms.set(gone.pid, 100);
  p.release(unread, "alice", undefined);
  assert.equal(every.running(), 0, "nothing to check");
  p.release(gone, "alice", undefined);
  assert.equal(every.running(), 1);
  cpu.ms.set(gone.pid, undefined); // its process ended: its file reads no more
  every.tick();
  assert.deepEqual(spawned.map((s) => s.killed), [false, true]);
  assert.equal(p.idleCount, 1);
  assert.equal(every.running(), 0);
  assert.equal(p.acquire("alice").process, unread, "the unread one is still kept");
  p.release(unread, "alice", undefined);
  after.fire();
  assert.equal(p.idleCount, 0, "until KLYM_IDLE_HOST_S");
  await p.close();
});

Deno.test("closing the pool stops the CPU check", async () => {
  const cpu = fakeCpu();
  const every = manualEvery();
  const { pool: p } = pool(4, manualAfter(), cpu, every);
  const a = p.acquire("alice").process;
  cpu.ms.set(a.pid, 0);
  p.release(a, "alice", undefined);
  assert.equal(every.running(), 1);
  await p.close();
  assert.equal(every.running(), 0);
});
