import assert from "node:assert/strict";
import {
  errorOf,
  makeRegistry,
  registryParts,
  resultOf,
  settled,
  until,
} from "../helpers/registry.ts";
import type { Spawn } from "../../src/tasks/process_pool.ts";
import { type Every, everyInterval } from "../../src/tasks/task_store.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";
import { TaskProcess } from "../../src/tasks/task_process.ts";
import type { TaskRecord, TaskRegistry } from "../../src/tasks/task_registry.ts";

/** Task processes spawned, their pids, and the pid each task ran in (read while it runs). */
function counting(): { spawn: Spawn; pids: number[]; processes: TaskProcess[] } {
  const pids: number[] = [];
  const processes: TaskProcess[] = [];
  return {
    pids,
    processes,
    spawn: (options) => {
      const process = new TaskProcess(options);
      pids.push(process.pid);
      processes.push(process);
      return process;
    },
  };
}

/**
 * Runs one task to the end of its turn in its process and returns it, with the pid of that process.
 */
async function run(
  registry: TaskRegistry,
  kind: string,
  params: Record<string, unknown> = {},
  owner = "alice",
): Promise<{ task: TaskRecord; pid: number | undefined }> {
  let pid: number | undefined;
  let id: string | undefined;
  // The process is known from the launch's event until the task's turn in it is over.
  const unsubscribe = registry.events.subscribe(() => {
    if (id !== undefined) pid ??= registry.pidOf(id);
  });
  try {
    const task = registry.start({ kind, params, owner });
    id = task.id;
    pid ??= registry.pidOf(id);
    await settled(task);
    // Its turn in its process is over: the process is kept idle or gone.
    await registry.whenIdle();
    return { task, pid };
  } finally {
    unsubscribe();
  }
}

Deno.test("a principal's next task runs in its kept host, in a fresh Worker that finds nothing of the task before", async () => {
  const spawned = counting();
  await using registry = makeRegistry({}, { spawn: spawned.spawn });
  const first = await run(registry, "leave_trace", { secret: "first task's secret" });
  assert.deepEqual(resultOf(first.task), {
    global: null,
    module: null,
    broadcastChannel: "undefined",
    blobUrls: "undefined",
  });
  const second = await run(registry, "leave_trace", { secret: "second" });
  assert.equal(spawned.pids.length, 1, "the second task was handed the kept host");
  assert.equal(second.pid, first.pid);
  assert.deepEqual(resultOf(second.task), {
    global: null,
    module: null,
    broadcastChannel: "undefined",
    blobUrls: "undefined",
  }, "nothing the first task left is seen by the second");
});

Deno.test("a host kept for one principal is never handed to another", async () => {
  const spawned = counting();
  await using registry = makeRegistry({}, { spawn: spawned.spawn });
  const { pool } = registryParts(registry);
  const alice = await run(registry, "echo_text", { text: "a" }, "alice");
  assert.equal(pool.idleCount, 1, "alice's host is kept");
  const bob = await run(registry, "echo_text", { text: "b" }, "bob");
  assert.equal(spawned.pids.length, 2, "bob's task got a process of its own");
  assert.equal(pool.idleCount, 2);
  assert.notEqual(bob.pid, alice.pid);
  const aliceAgain = await run(registry, "echo_text", { text: "a2" }, "alice");
  const bobAgain = await run(registry, "echo_text", { text: "b2" }, "bob");
  assert.equal(spawned.pids.length, 2);
  assert.equal(aliceAgain.pid, alice.pid);
  assert.equal(bobAgain.pid, bob.pid);
});

Deno.test("a host is not kept after a cancel, a timeout, a memory alarm or a kind asking for a fresh process", async (t) => {
  const cases: [
    string,
    string,
    Record<string, unknown>,
    (registry: TaskRegistry, task: TaskRecord) => void,
  ][] = [
    [
      "cancel",
      "sleep",
      { ms: 60_000 },
      (registry, task) =>
        void until(registry, () => task.codeStartedAt !== undefined).then(() =>
          registry.cancel(task.id)
        ),
    ],
    ["timeout", "spin", {}, () => {}],
    ["memory alarm", "oom", {}, () => {}],
    ["fresh process", "fresh_process", {}, () => {}],
  ];
  for (const [name, kind, params, act] of cases) {
    await t.step(name, async () => {
      const spawned = counting();
      await using registry = makeRegistry({ KLYM_TASK_MEMORY_MB: "128" }, { spawn: spawned.spawn });
      const task = registry.start({
        kind,
        params,
        owner: "alice",
        ...(name === "timeout" ? { timeoutS: 1 } : {}),
      });
      act(registry, task);
      await settled(task);
      await registry.whenIdle();
      assert.equal(
        registryParts(registry).pool.idleCount,
        0,
        `${kind} ended as ${task.state.status}`,
      );
      await run(registry, "echo_text", { text: "next" });
      assert.equal(spawned.pids.length, 2, "the next task got a new process");
    });
  }
});

Deno.test("a kept host's prepared Worker never runs a kind whose file changed since", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    Deno.writeTextFileSync(`${dir}/k.ts`, `export default () => "v1";\n`);
    const spawned = counting();
    await using registry = makeRegistry({ KLYM_TASKS_DIR: dir }, { spawn: spawned.spawn });
    const first = await run(registry, "k");
    assert.equal(resultOf(first.task), "v1");
    Deno.writeTextFileSync(`${dir}/k.ts`, `export default () => "version 2";\n`);
    const changed = await run(registry, "k");
    assert.equal(resultOf(changed.task), "version 2");
    assert.equal(changed.pid, first.pid, "in the same kept host");
    const again = await run(registry, "k");
    assert.equal(resultOf(again.task), "version 2");
    assert.equal(spawned.pids.length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a task's own failure leaves its host fit for the next task, with the failure reported as before", async () => {
  const spawned = counting();
  await using registry = makeRegistry({}, { spawn: spawned.spawn });
  const failed = await run(registry, "fail");
  assert.equal(errorOf(failed.task)?.code, "task_error");
  const next = await run(registry, "echo_text", { text: "after" });
  assert.equal(next.task.state.status, "succeeded");
  assert.equal(spawned.pids.length, 1);
});

Deno.test("KLYM_IDLE_HOSTS bounds the kept hosts of all principals together; 0 keeps none", async (t) => {
  await t.step("1: the host idle longest exits first", async () => {
    const spawned = counting();
    await using registry = makeRegistry({ KLYM_IDLE_HOSTS: "1" }, { spawn: spawned.spawn });
    const { pool } = registryParts(registry);
    await run(registry, "echo_text", { text: "a" }, "alice");
    await run(registry, "echo_text", { text: "b" }, "bob");
    assert.equal(pool.idleCount, 1);
    await run(registry, "echo_text", { text: "a" }, "alice");
    assert.equal(spawned.pids.length, 3, "alice's host was ended to keep bob's");
  });
  await t.step("0: every process exits with its task", async () => {
    const spawned = counting();
    await using registry = makeRegistry({ KLYM_IDLE_HOSTS: "0" }, { spawn: spawned.spawn });
    await run(registry, "echo_text", { text: "a" });
    await run(registry, "echo_text", { text: "a" });
    assert.equal(spawned.pids.length, 2);
    assert.equal(registryParts(registry).pool.idleCount, 0);
  });
});

Deno.test("a kind that logs and fails at load does so the same way in a host that prepared its Worker ahead", async () => {
  const spawned = counting();
  await using registry = makeRegistry({}, { spawn: spawned.spawn });
  for (const round of [1, 2, 3]) {
    const { task } = await run(registry, "reject_at_load");
    assert.equal(errorOf(task)?.code, "load_error", `round ${round}`);
    assert.match(errorOf(task)!.message, /rejected at load/);
    assert.deepEqual(task.logs.read(0, 10).lines.map((l) => l.text), ["module loaded"]);
  }
  assert.equal(spawned.pids.length, 1, "its runtime reported the failure: the host was kept");
  const next = await run(registry, "echo_text", { text: "after" });
  assert.equal(next.task.state.status, "succeeded");
});

Deno.test("a grynya connect a task asked for and left unawaited ends with the task, not in its kept host", async () => {
  // A grynya that holds every request open until its client goes away.
  let open = 0;
  let seen = 0;
  let closedAll = () => {};
  await using grynya = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      open++;
      seen++;
      await new Promise((resolve) => request.signal.addEventListener("abort", resolve));
      if (--open === 0) closedAll();
      return new Response(null, { status: 503 });
    },
  );
  await using registry = makeRegistry({
    KLYM_GRYNYA_URL: `http://127.0.0.1:${grynya.addr.port}/mcp`,
    // Far beyond the waits below: only the task's end may close the connect.
    KLYM_GRYNYA_CONNECT_TIMEOUT_MS: "600000",
  });
  const { task } = await run(registry, "grynya_unawaited");
  assert.equal(task.state.status, "succeeded");
  const atEnd = seen;
  // A connect that reached grynya before the end is closed by it (else it stays for 600 s).
  if (open > 0) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((resolve) => closedAll = resolve),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error("the ended task's connect is still open")),
          30_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }
  // The same principal's next tasks run in the kept host; nothing of the first reaches grynya.
  for (let i = 0; i < 3; i++) await run(registry, "hello");
  assert.equal(seen, atEnd, "a request of the ended task reached grynya after its end");
  assert.equal(open, 0);
});

Deno.test(
  "a kept host whose prepared Worker spins is ended by KLYM_IDLE_HOST_CPU_MS, not kept for KLYM_IDLE_HOST_S; its principal's next task runs in a new process",
  {
    ignore: Deno.build.os !== "linux",
  },
  async () => {
    const spawned = counting();
    // Only the CPU bound can end the kept host within this test (a spinning one, 1 s of CPU).
    await using registry = makeRegistry({ KLYM_IDLE_HOST_S: "86400" }, { spawn: spawned.spawn });
    const { pool } = registryParts(registry);
    const first = await run(registry, "spin_when_idle");
    assert.equal(resultOf(first.task), "done");
    assert.equal(pool.idleCount, 1, "kept after its clean end");
    const exit = await within(spawned.processes[0]!.exited, "the spinning kept host to be ended");
    assert.equal(exit.signal, "SIGKILL");
    assert.equal(pool.idleCount, 0);
    const next = await run(registry, "hello");
    assert.equal(next.task.state.status, "succeeded");
    assert.equal(spawned.pids.length, 2, "in a process of its own");
    assert.notEqual(next.pid, first.pid);
  },
);

Deno.test("an honest kept host, its CPU checked many times while idle, is kept and reused", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  const spawned = counting();
  let checks = 0;
  let checked = () => {};
  const cpuCheck: Every = (ms, tick) =>
    everyInterval(ms, () => {
      tick();
      checks++;
      checked();
    });
  await using registry = makeRegistry({}, { spawn: spawned.spawn, cpuCheck });
  const { pool } = registryParts(registry);
  for (const round of [1, 2, 3]) {
    // The fixtures' largest module graph: preparing it is the most an honest host spends.
    const { task } = await run(registry, "folder_kind");
    assert.equal(task.state.status, "succeeded", `round ${round}`);
    const seen = checks;
    await within(
      new Promise<void>((resolve) => checked = () => checks >= seen + 8 && resolve()),
      "8 CPU checks of the kept host",
    );
    assert.equal(pool.idleCount, 1, `round ${round}: still kept`);
  }
  assert.equal(spawned.pids.length, 1, "every task ran in the one kept host");
});

/** `promise`, or a failure naming what did not come within the tests' patience. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Waited ${PATIENCE_MS} ms for ${what}`)),
          PATIENCE_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
