/** Task code cannot reach past its sandbox, slow the server, or outlive a cancel or the server. */
import assert from "node:assert/strict";
import {
  call,
  childPids,
  childrenLeft,
  cpuSeconds,
  startKlym,
  waitFinal,
  waitLogged,
} from "../helpers/klym_process.ts";
import { answerTimes, assertAnswersKeptUp } from "../helpers/answer_times.ts";

Deno.test("a task is denied env, files, writes, subprocesses, other hosts, sys and ffi", async () => {
  await using klym = await startKlym({ KLYM_GRYNYA_URL: "http://127.0.0.1:8000/sse" });
  const client = await klym.connect();
  const cases = { other_url: "http://127.0.0.1:8001/", named_url: "http://localhost:8000/" };
  const results: Record<string, Record<string, string>> = {};
  for (const [name, url] of Object.entries(cases)) {
    const task = await call(client, "start_async_agent_task", {
      kind: "snoop",
      params: { other_url: url },
    });
    const final = await waitFinal(client, String(task.task_id));
    assert.equal(final.status, "succeeded");
    results[name] = final.result as Record<string, string>;
  }
  for (const outcome of Object.values(results)) {
    for (const [what, how] of Object.entries(outcome)) {
      assert.match(how, /^NotCapable: Requires/, `${what} must be denied, got ${how}`);
    }
  }
  assert.match(results.other_url!.net!, /127\.0\.0\.1:8001/);
  assert.match(results.named_url!.net!, /localhost:8000/, "names are compared, not addresses");
});

Deno.test("memory exhaustion and Deno.exit() fail their tasks while a neighbour finishes", async () => {
  await using klym = await startKlym({ KLYM_TASK_MEMORY_MB: "128" });
  const client = await klym.connect();
  const start = (kind: string, params = {}) =>
    call(client, "start_async_agent_task", { kind, params }).then((s) => String(s.task_id));
  const neighbour = await start("sleep", { ms: 1500 });
  const [oom, exit] = [await start("oom"), await start("exit")];
  const oomFinal = await waitFinal(client, oom);
  assert.equal(oomFinal.status, "failed");
  assert.equal(oomFinal.error?.code, "out_of_memory");
  assert.match(oomFinal.error!.message, /KLYM_TASK_MEMORY_MB/);
  const exitFinal = await waitFinal(client, exit);
  assert.equal(exitFinal.error?.code, "exit_called");
  const ok = await waitFinal(client, neighbour);
  assert.equal(ok.status, "succeeded");
  // The neighbour's own clock is its word; the server's times and its log lines are not.
  const ran = Date.parse(ok.finished_at!) - Date.parse(ok.code_started_at!);
  // (From the server's word that its code started, which a loaded machine may bring late.)
  assert.ok(ran >= 1000, `the neighbour ran ${ran} ms by the server's clock`);
  const ticks = ok.allLogs.filter((l) => /^tick \d+$/.test(l.text)).length;
  assert.ok(ticks >= 1 && ticks <= 15, `${ticks} ticks of 100 ms`);
});

Deno.test("the server answers promptly while 4 tasks spin, and its CPU use drops after cancel", async () => {
  await using klym = await startKlym({ KLYM_WARM_SPARES: "0" });
  const client = await klym.connect();
  const idle = await answerTimes(client, 50);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    ids.push(String((await call(client, "start_async_agent_task", { kind: "spin" })).task_id));
  }
  for (const id of ids) await waitLogged(client, id);
  // Spinning tasks run at nice 19 on 2 cores: the server's answers stay quick (figures in bench/).
  const spinning = await answerTimes(client, 50);
  assertAnswersKeptUp(idle, spinning, { medianMs: 100, slowestMs: 2000 }, "while spinning");

  const spinners = childPids(klym.pid);
  assert.equal(spinners.length, 4);
  for (const id of ids) await call(client, "cancel_task", { task_id: id });
  for (const id of ids) assert.equal((await waitFinal(client, id)).status, "cancelled");
  assert.deepEqual(await childrenLeft(klym.pid, 5000), [], "no task process left");
  for (const pid of spinners) {
    assert.throws(() => Deno.statSync(`/proc/${pid}`), "killed, not orphaned");
  }
  // Nothing of the spinners lives on in the server: over 2 s it idles (4 spinners would use 4 s).
  const before = cpuSeconds(klym.pid);
  await new Promise((r) => setTimeout(r, 2000));
  const used = cpuSeconds(klym.pid) - before;
  assert.ok(used < 1, `server used ${used} CPU-seconds in the 2 s after cancel`);
});

Deno.test("SIGTERM cancels running tasks, kills their processes and exits promptly", async () => {
  const klym = await startKlym({ KLYM_WARM_SPARES: "2" });
  const client = await klym.connect();
  for (const kind of ["spin", "cooperative", "spin"]) {
    const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", { kind });
    await waitLogged(client, task_id);
  }
  const children = childPids(klym.pid);
  assert.equal(children.length, 5, "three tasks and two spares");
  await client.close();
  const signalledAt = Date.now();
  klym.signal("SIGTERM");
  const status = await klym.exited;
  const took = Date.now() - signalledAt;
  assert.equal(status.code, 0);
  assert.ok(took < 5000, `exited after ${took} ms`);
  for (const pid of children) {
    assert.throws(() => Deno.statSync(`/proc/${pid}`), `child ${pid} is gone`);
  }
  assert.ok(klym.logs.some((l) => /cancelled/.test(l)), "tasks were ended as cancelled");
  await klym[Symbol.asyncDispose]();
});
