import assert from "node:assert/strict";
import { KlymError } from "../../src/errors.ts";
import {
  errorOf,
  makeRegistry,
  manualEvery,
  registryParts,
  resultOf,
  settled,
  until,
} from "../helpers/registry.ts";
import { SWEEP_MS } from "../../src/tasks/task_store.ts";
import { isTerminal, type TaskState } from "../../src/tasks/task_state.ts";
import type { Spawn } from "../../src/tasks/process_pool.ts";
import { TaskProcess } from "../../src/tasks/task_process.ts";
import { describeExit } from "../../src/tasks/task_registry.ts";
import { HOST_EXIT_CANCEL_UNANSWERED } from "../../src/protocol.ts";

const rejects = (fn: () => unknown, code: string, pattern: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KlymError, String(e));
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  });

Deno.test("a task's output, progress and result reach the registry in order", async () => {
  await using registry = makeRegistry();
  const task = registry.start({ kind: "hello", prompt: "p", params: { a: 1 } });
  // With no warm spare, its process is spawned in a turn of its own, after start returns.
  assert.equal(task.state.status, "queued");
  await settled(task);
  assert.deepEqual(resultOf(task), { taskId: task.id, prompt: "p", params: { a: 1 } });
  assert.deepEqual(task.logs.read(0, 10).lines.map((l) => [l.seq, l.stream, l.text]), [
    [1, "stdout", "hello from hello"],
    [2, "stderr", "a warning"],
    [3, "stdout", "{ nested: { n: 1 } }"],
  ]);
  assert.deepEqual(task.progress, { done: 1, total: 2, message: "half way" });
});

Deno.test("each way a task can break ends it as failed with its cause", async (t) => {
  await using registry = makeRegistry({ KLYM_TASK_MEMORY_MB: "128" });
  const cases = {
    fail: ["task_error", /task gave up/],
    throw: ["load_error", /broken at load/],
    rejection: ["unhandled_rejection", /nobody caught me/],
    exit: ["exit_called", /Deno\.exit\(7\)/],
    oom: ["out_of_memory", /KLYM_TASK_MEMORY_MB/],
  } as const;
  const tasks = Object.keys(cases).map((kind) => registry.start({ kind }));
  const neighbour = registry.start({ kind: "sleep", params: { ms: 1500 } });
  for (const task of tasks) {
    await t.step(task.kind, async () => {
      await settled(task);
      const [code, message] = cases[task.kind as keyof typeof cases];
      assert.equal(task.state.status, "failed");
      assert.equal(errorOf(task)?.code, code);
      assert.match(errorOf(task)!.message, message);
    });
  }
  await settled(neighbour);
  assert.equal(neighbour.state.status, "succeeded", "the neighbour is not disturbed");
});

Deno.test("output written around console is captured as log lines", async () => {
  await using registry = makeRegistry();
  const task = await settled(registry.start({ kind: "raw_stdout" }));
  assert.equal(resultOf(task), "ok");
  assert.deepEqual(task.logs.read(0, 10).lines.map((l) => [l.stream, l.text]), [[
    "stdout",
    "raw line",
  ]]);
});

Deno.test("the streams of a task's stdout, stderr and stdin work as the files do", async () => {
  await using registry = makeRegistry();
  const task = await settled(registry.start({ kind: "stream_output" }));
  assert.deepEqual(resultOf(task), { stdinEnded: true, sameStream: true });
  assert.deepEqual(task.logs.read(0, 10).lines.map((l) => [l.stream, l.text]), [
    ["stdout", "streamed out"],
    ["stderr", "streamed err"],
  ]);
});

Deno.test("running tasks never exceed KLYM_MAX_CONCURRENT; the rest wait in FIFO order", async () => {
  await using registry = makeRegistry({ KLYM_MAX_CONCURRENT: "2" });
  // Every change is seen where it happens: the peak is exact, and the order of starts is the
  // order of events, not of millisecond stamps (which are often equal).
  let peak = 0;
  const startOrder: string[] = [];
  const unsubscribe = registry.events.subscribe(({ id }) => {
    peak = Math.max(peak, registry.counts().running);
    const task = registry.get(id);
    if (task.state.status === "running" && !startOrder.includes(id)) startOrder.push(id);
  });
  const tasks = Array.from(
    { length: 5 },
    () => registry.start({ kind: "sleep", params: { ms: 100 } }),
  );
  await until(registry, () => registry.counts().running === 2);
  assert.deepEqual(tasks.map((t) => t.state.status), [
    "running",
    "running",
    "queued",
    "queued",
    "queued",
  ]);
  for (const task of tasks) await settled(task);
  unsubscribe();
  assert.equal(peak, 2);
  assert.ok(tasks.every((t) => t.state.status === "succeeded"));
  assert.deepEqual(startOrder, tasks.map((t) => t.id), "started in the order they came");
});

Deno.test("beyond KLYM_MAX_QUEUED, start is refused with a clear error", async () => {
  await using registry = makeRegistry({ KLYM_MAX_CONCURRENT: "1", KLYM_MAX_QUEUED: "2" });
  const admitted = [0, 1, 2].map(() => registry.start({ kind: "cooperative" }));
  await until(registry, () => admitted[0]!.state.status === "running");
  assert.deepEqual(admitted.map((t) => t.state.status), ["running", "queued", "queued"]);
  rejects(
    () => registry.start({ kind: "hello" }),
    "QUEUE_FULL",
    /queue limit is 2 \(KLYM_MAX_QUEUED\)/,
  );
  registry.cancel(admitted[2]!.id);
  assert.equal(registry.start({ kind: "hello" }).state.status, "queued", "a freed place is usable");
  for (const task of registry.list()) registry.cancel(task.id);
  await registry.whenIdle();
});

Deno.test("prompt, params and timeout limits hold at their edge and refuse one past it", async () => {
  await using registry = makeRegistry({
    KLYM_MAX_PROMPT_BYTES: "10",
    KLYM_MAX_PARAMS_BYTES: "20",
    KLYM_MAX_TIMEOUT_S: "60",
    KLYM_DEFAULT_TIMEOUT_S: "60",
    KLYM_MAX_CONCURRENT: "1",
  });
  const first = registry.start({ kind: "cooperative" });
  const ok = [
    registry.start({ kind: "hello", prompt: "x".repeat(10) }),
    registry.start({ kind: "hello", params: { k: "x".repeat(12) } }), // {"k":"…"} is 20 bytes
    registry.start({ kind: "hello", timeoutS: 60 }),
  ];
  // The lowest deadline is admitted (whether a slow spawn lets it finish in 1 s is not the point).
  const shortest = registry.start({ kind: "hello", timeoutS: 1 });
  assert.equal(shortest.timeoutS, 1);
  registry.cancel(shortest.id);
  rejects(
    () => registry.start({ kind: "hello", prompt: "x".repeat(11) }),
    "INVALID_INPUT",
    /"prompt" is 11 bytes, the limit is 10 \(KLYM_MAX_PROMPT_BYTES\)/,
  );
  rejects(
    () => registry.start({ kind: "hello", params: { k: "x".repeat(13) } }),
    "INVALID_INPUT",
    /"params" is 21 bytes as JSON, the limit is 20/,
  );
  rejects(
    () => registry.start({ kind: "hello", timeoutS: 61 }),
    "INVALID_INPUT",
    /between 1 and 60 \(KLYM_MAX_TIMEOUT_S\), received 61/,
  );
  rejects(() => registry.start({ kind: "hello", timeoutS: 0 }), "INVALID_INPUT", /received 0/);
  registry.cancel(first.id);
  for (const task of ok) assert.equal((await settled(task)).state.status, "succeeded");
});

Deno.test("unknown kinds list the known ones; names with path characters are refused", async () => {
  await using registry = makeRegistry();
  rejects(
    () => registry.start({ kind: "nope" }),
    "UNKNOWN_KIND",
    /unknown "kind" "nope"; known kinds: .*hello.*spin/,
  );
  for (const kind of ["../etc/passwd", "a/b", "hello.ts", "", ".hidden", "x".repeat(65)]) {
    rejects(() => registry.start({ kind }), "UNKNOWN_KIND", /"kind" must be a name of letters/);
  }
});

Deno.test("a result at KLYM_MAX_RESULT_BYTES is kept; one byte more fails the task", async () => {
  await using registry = makeRegistry({ KLYM_MAX_RESULT_BYTES: "1000" });
  const fits = registry.start({ kind: "big_result", params: { bytes: 998 } }); // plus two quotes
  const over = registry.start({ kind: "big_result", params: { bytes: 999 } });
  assert.equal((await settled(fits)).state.status, "succeeded");
  assert.equal((resultOf(fits) as string).length, 998);
  await settled(over);
  assert.equal(errorOf(over)?.code, "result_too_large");
  assert.match(errorOf(over)!.message, /1001 bytes; the limit is 1000 \(KLYM_MAX_RESULT_BYTES\)/);
});

Deno.test("past KLYM_LOG_LIMIT_BYTES the oldest lines are dropped and counted", async () => {
  await using registry = makeRegistry({ KLYM_LOG_LIMIT_BYTES: "10240" });
  const task = await settled(
    registry.start({ kind: "print_lines", params: { lines: 500, width: 36 } }),
  );
  assert.equal(task.state.status, "succeeded");
  assert.equal(task.logs.size, Math.floor(10240 / (64 + 36)));
  assert.equal(task.logs.dropped + task.logs.size, 500);
  assert.match(task.logs.read(0, 1000).lines.at(-1)!.text, /^0000499 /, "the newest line is kept");
});

Deno.test("a line longer than KLYM_MAX_LOG_LINE_BYTES is cut, not lost", async () => {
  await using registry = makeRegistry({ KLYM_MAX_LOG_LINE_BYTES: "100" });
  const task = await settled(
    registry.start({ kind: "print_lines", params: { lines: 2, width: 500 } }),
  );
  const lines = task.logs.read(0, 10).lines;
  assert.equal(lines.length, 2);
  assert.ok(lines.every((l) => new TextEncoder().encode(l.text).length <= 100));
  assert.match(lines[0]!.text, /^0000000 x+ …\[\d+ bytes cut\]$/);
});

Deno.test("a task stuck in a CPU loop times out and its process is killed", async () => {
  await using registry = makeRegistry({ KLYM_CANCEL_GRACE_MS: "200" });
  const task = await settled(registry.start({ kind: "spin", timeoutS: 1 }));
  assert.equal(task.state.status, "timed_out");
  assert.match(errorOf(task)!.message, /timeout of 1 s/);
  // Once timed out, the process is killed after its 200 ms grace: gone in moments (a loaded
  // machine's moments), not at the loop's own pace.
  const timedOutAt = Date.now();
  await registry.whenIdle();
  const elapsed = Date.now() - timedOutAt;
  assert.ok(elapsed < 30_000, `process gone ${elapsed} ms after the timeout`);
  assert.equal(registryParts(registry).pool.liveCount, 0);
});

/** Spawns real task processes and keeps them, for tests that look at how each one ended. */
function recordingSpawn(): { spawn: Spawn; processes: TaskProcess[] } {
  const processes: TaskProcess[] = [];
  const spawn: Spawn = (options) => {
    const process = new TaskProcess(options);
    processes.push(process);
    return process;
  };
  return { spawn, processes };
}

Deno.test("cancel ends a CPU loop at once, without waiting for its grace, and is idempotent", async () => {
  const { spawn, processes } = recordingSpawn();
  // A grace of 30 s: a process ended by the server's kill after it would take 30 s and end by
  // SIGKILL; the host ends it itself once the loop leaves its cancel unanswered (KLYM_CANCEL_ACK_MS).
  await using registry = makeRegistry({ KLYM_CANCEL_GRACE_MS: "30000" }, { spawn });
  const task = registry.start({ kind: "spin" });
  await until(registry, () => task.logs.size > 0);
  const cancelledAt = Date.now();
  assert.equal(registry.cancel(task.id, "enough").state.status, "cancelled");
  const exit = await processes[0]!.exited;
  assert.ok(Date.now() - cancelledAt < 30_000, "gone before the grace ran out");
  assert.deepEqual([exit.code, exit.signal], [HOST_EXIT_CANCEL_UNANSWERED, null]);
  await until(registry, () => task.logs.size > 1);
  assert.match(
    task.logs.read(0, 10).lines.map((l) => l.text).join("\n"),
    /did not answer its cancel within 50 ms \(KLYM_CANCEL_ACK_MS\).*without the grace period/,
  );
  await registry.whenIdle();
  assert.equal(errorOf(task)?.message, "enough");
  assert.equal(registry.cancel(task.id).state.status, "cancelled");
  const done = await settled(registry.start({ kind: "hello" }));
  assert.equal(
    registry.cancel(done.id).state.status,
    "succeeded",
    "a finished task keeps its status",
  );
});

Deno.test("a task that answers its cancel keeps the whole grace for its cleanup", async () => {
  const { spawn, processes } = recordingSpawn();
  // Its cleanup outlasts the bound on an answer (2 s) by a second, well within the 30 s grace.
  await using registry = makeRegistry(
    { KLYM_CANCEL_GRACE_MS: "30000", KLYM_CANCEL_ACK_MS: "2000" },
    { spawn },
  );
  const task = registry.start({ kind: "slow_cleanup", params: { cleanup_ms: 3000 } });
  await until(registry, () => task.logs.size > 0);
  registry.cancel(task.id, "stop please");
  const exit = await processes[0]!.exited;
  assert.deepEqual([exit.code, exit.signal], [0, null], "it ended by itself, after its cleanup");
  await registry.whenIdle();
  assert.equal(task.state.status, "cancelled");
  assert.deepEqual(task.logs.read(0, 10).lines.map((l) => l.text), [
    "waiting for abort",
    "cleaning up",
    "cleaned up",
  ]);
});

Deno.test("a cooperative task sees ctx.signal abort and its last words are kept", async () => {
  // The ack bound as long as the grace: on a loaded machine a waiting Worker may take more than
  // 50 ms to answer, and then it would be ended as a loop, without its last words.
  await using registry = makeRegistry({ KLYM_CANCEL_GRACE_MS: "2000", KLYM_CANCEL_ACK_MS: "2000" });
  const task = registry.start({ kind: "cooperative" });
  await until(registry, () => task.logs.size > 0);
  registry.cancel(task.id, "stop please");
  await registry.whenIdle();
  assert.equal(task.state.status, "cancelled");
  assert.equal(resultOf(task), undefined, "no result is recorded after a cancel");
  assert.deepEqual(task.logs.read(0, 10).lines.map((l) => l.text), [
    "waiting for abort",
    "aborted: cancelled",
  ]);
});

Deno.test("a queued task can be cancelled and never runs", async () => {
  await using registry = makeRegistry({ KLYM_MAX_CONCURRENT: "1" });
  const blocker = registry.start({ kind: "cooperative" });
  const queued = registry.start({ kind: "hello" });
  assert.equal(registry.cancel(queued.id).state.status, "cancelled");
  registry.cancel(blocker.id);
  await registry.whenIdle();
  assert.equal(queued.logs.size, 0);
  assert.equal("startedAt" in queued.state && queued.state.startedAt, undefined);
});

Deno.test("a storm of cancels racing completions and timeouts leaves one terminal state each", async () => {
  await using registry = makeRegistry({ KLYM_MAX_CONCURRENT: "5", KLYM_CANCEL_GRACE_MS: "100" });
  // Each cancel is timed from a moment of its task: its start (the registry sets the 1 s deadline
  // in the same turn, just after this listener ran, so timers order cancel and timeout), the start
  // of its code (to race its result) or its end. Only the racers may end either way.
  type Plan = {
    kind: string;
    params: Record<string, number>;
    timeoutS: number;
    from: "start" | "code" | "end";
    cancelAfterMs: number;
    may: readonly string[];
  };
  const plans: Plan[] = [0, 1, 2].flatMap((i): Plan[] => [
    {
      kind: i === 0 ? "sleep" : "spin",
      params: { ms: 5000, tick_ms: 20 },
      timeoutS: 1,
      from: "start",
      cancelAfterMs: 50 * i,
      may: ["cancelled"],
    },
    {
      kind: "spin",
      params: {},
      timeoutS: 1,
      from: "start",
      cancelAfterMs: 1300,
      may: ["timed_out"],
    },
    {
      kind: "spin",
      params: {},
      timeoutS: 1,
      from: "start",
      cancelAfterMs: 995 + 5 * i,
      may: ["cancelled", "timed_out"],
    },
    {
      kind: "sleep",
      params: { ms: 150, tick_ms: 20 },
      timeoutS: 600, // never the end of these, however loaded the machine
      from: "code",
      cancelAfterMs: 100 + 50 * i,
      may: ["succeeded", "cancelled"],
    },
    {
      kind: "sleep",
      params: { ms: 20, tick_ms: 20 },
      timeoutS: 600, // never the end of these, however loaded the machine
      from: "end",
      cancelAfterMs: 0,
      may: ["succeeded"],
    },
  ]);
  // No warm spare: every task starts in a later turn, after all are admitted and planned.
  const tasks = plans.map((plan) => registry.start(plan));
  const byId = new Map(tasks.map((task, i) => [task.id, { task, plan: plans[i]! }]));
  const firstEnd = new Map<string, TaskState>();
  const changedAfterEnd = new Set<string>();
  const afterCancel = new Map<string, string[]>();
  const cancels: Promise<void>[] = [];
  const unsubscribe = registry.events.subscribe(({ type, id }) => {
    const entry = byId.get(id);
    if (type !== "task" || !entry) return;
    const { task, plan } = entry;
    if (isTerminal(task.state)) {
      const first = firstEnd.get(id);
      if (!first) firstEnd.set(id, task.state);
      else if (task.state !== first) changedAfterEnd.add(id);
    }
    const due = plan.from === "start"
      ? task.state.status !== "queued"
      : plan.from === "code"
      ? task.codeStartedAt !== undefined || isTerminal(task.state)
      : isTerminal(task.state);
    if (!due || afterCancel.has(id)) return;
    const statuses: string[] = [];
    afterCancel.set(id, statuses);
    cancels.push(
      new Promise((resolve) =>
        setTimeout(() => {
          statuses.push(registry.cancel(id).state.status, registry.cancel(id).state.status);
          resolve();
        }, plan.cancelAfterMs)
      ),
    );
  });
  await until(registry, () => afterCancel.size === tasks.length);
  await Promise.all(cancels);
  // Processes still wind down here (results in flight, exits after kill): none may change an end.
  await registry.whenIdle();
  unsubscribe();
  for (const [i, task] of tasks.entries()) {
    const plan = plans[i]!;
    const status = task.state.status;
    const what = `${task.kind} cancelled ${plan.cancelAfterMs} ms after its ${plan.from}`;
    assert.ok(plan.may.includes(status), `${what} ended ${status}`);
    assert.deepEqual(afterCancel.get(task.id), [status, status], `${what}: cancel saw its end`);
    assert.equal(task.state, firstEnd.get(task.id), `${what}: its first end is its last`);
    if (status === "timed_out") assert.match(errorOf(task)!.message, /timeout of 1 s/);
    if (status === "cancelled") assert.equal(errorOf(task)!.message, "cancelled by the client");
  }
  assert.deepEqual([...changedAfterEnd], [], "terminal states never change");
  assert.deepEqual(
    [...new Set(tasks.map((t) => t.state.status))].sort(),
    ["cancelled", "succeeded", "timed_out"],
    "the storm ends tasks each way",
  );
  // Every process is gone, but those kept idle after a clean end (KLYM_IDLE_HOSTS).
  const { pool } = registryParts(registry);
  assert.equal(pool.liveCount, pool.idleCount);
  assert.ok(pool.idleCount <= 4);
});

Deno.test("finished tasks are forgotten beyond KLYM_MAX_FINISHED and after KLYM_RETENTION_S", async () => {
  // The registry's clock, not the wall clock, decides what has expired, and its sweep runs when
  // the test ticks it.
  let clock = Date.now();
  const sweeps = manualEvery();
  const registry = makeRegistry({
    KLYM_MAX_FINISHED: "2",
    KLYM_RETENTION_S: "60",
    KLYM_MAX_CONCURRENT: "1",
  }, { now: () => clock, every: sweeps });
  assert.deepEqual(sweeps.ms, [SWEEP_MS], "one sweep is scheduled, every second");
  const [a, b, c] = [0, 1, 2].map(() => registry.start({ kind: "hello" }));
  for (const task of [a!, b!, c!]) await settled(task);
  rejects(() => registry.get(a!.id), "TASK_NOT_FOUND", /list_tasks shows the known ids/);
  clock += 59_999;
  sweeps.tick();
  assert.equal(registry.get(c!.id).state.status, "succeeded", "59.999 s after: still kept");
  clock += 1;
  assert.equal(registry.get(c!.id).state.status, "succeeded", "kept until a sweep runs");
  sweeps.tick();
  rejects(() => registry.get(b!.id), "TASK_NOT_FOUND", /KLYM_RETENTION_S \(60 s\)/);
  rejects(() => registry.get(c!.id), "TASK_NOT_FOUND", /KLYM_RETENTION_S \(60 s\)/);
  await registry.shutdown();
  assert.ok(sweeps.stopped, "shutdown stops the sweep");
});

Deno.test("shutdown cancels queued and running tasks with reason shutdown and leaves no process", async () => {
  const registry = makeRegistry({ KLYM_MAX_CONCURRENT: "2" });
  const tasks = [
    registry.start({ kind: "spin" }),
    registry.start({ kind: "cooperative" }),
    registry.start({ kind: "hello" }),
  ];
  // Shutdown meets both kinds of running task with their code started, and a queued one.
  await until(registry, () => tasks[0]!.logs.size > 0 && tasks[1]!.logs.size > 0);
  assert.deepEqual(tasks.map((t) => t.state.status), ["running", "running", "queued"]);
  await registry.shutdown();
  for (const task of tasks) {
    assert.equal(task.state.status, "cancelled");
    assert.equal(errorOf(task)?.code, "shutdown");
  }
  assert.equal(registryParts(registry).pool.liveCount, 0);
  rejects(() => registry.start({ kind: "hello" }), "SHUTTING_DOWN", /shutting down/);
});

Deno.test("a failed spawn fails its task with the OS error, and the slot count stays exact", async () => {
  let spawns = 0;
  // The first two spawns meet a real OS error; later ones start real task processes.
  const spawn: Spawn = (options) => {
    if (spawns++ < 2) {
      new Deno.Command("/nonexistent/klym-task-host").spawn();
      throw new Error("unreachable");
    }
    return new TaskProcess(options);
  };
  await using registry = makeRegistry({ KLYM_MAX_CONCURRENT: "1" }, { spawn });
  const [first, second, third] = [0, 1, 2].map(() => registry.start({ kind: "hello" }));
  for (const task of [first!, second!]) {
    await settled(task);
    assert.equal(task.state.status, "failed");
    assert.equal(errorOf(task)?.code, "spawn_failed");
    assert.match(
      errorOf(task)!.message,
      /Cannot start the task's process: NotFound: .*nonexistent/,
    );
  }
  await settled(third!);
  assert.equal(third!.state.status, "succeeded", "a later spawn works again");
  assert.equal(registry.counts().running, 0);
  await registry.whenIdle();
  assert.equal(registry.processCount, 0, "no slot is held by a process that never started");
});

Deno.test("an exit that V8 or the allocator reports as out of memory is out_of_memory", () => {
  const crash = (stderrTail: string) => describeExit({ code: 133, signal: null, stderrTail });
  for (
    const report of [
      "# Fatal JavaScript out of memory: CALL_AND_RETRY_LAST",
      "<--- Last few GCs --->\n# Fatal process out of memory: Zone",
      "memory allocation of 1073741824 bytes failed",
      "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
    ]
  ) {
    assert.equal(crash(report).code, "out_of_memory", report);
  }
  const other = crash("thread 'main' panicked at src/lib.rs:1\nboom");
  assert.equal(other.code, "process_exited");
  assert.match(other.message, /exit code 133.*boom/);
});

Deno.test("a kind's earlier snapshot is removed once no task process runs it any more", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    Deno.writeTextFileSync(
      `${dir}/k.ts`,
      `export default (ctx) => new Promise((r) => ctx.signal.addEventListener("abort", r));\n`,
    );
    await using registry = makeRegistry({ KLYM_TASKS_DIR: dir });
    const snapshots = registryParts(registry).kinds.snapshotDir()!;
    const names = () => [...Deno.readDirSync(snapshots)].map((e) => e.name).sort();
    const waiting = registry.start({ kind: "k" });
    await until(registry, () => waiting.state.status === "running");
    const [first] = names();
    Deno.writeTextFileSync(`${dir}/k.ts`, `export default () => 2;\n`);
    const changed = registry.start({ kind: "k" });
    await settled(changed);
    assert.equal(resultOf(changed), 2);
    assert.equal(names().length, 2, "the first is held while its task's process runs");
    assert.ok(names().includes(first!));
    registry.cancel(waiting.id);
    await registry.whenIdle();
    assert.ok(!names().includes(first!), "the first is gone once its task's process is");
    assert.equal(names().length, 1, "the latest stays for the next launch");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
