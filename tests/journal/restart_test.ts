/** The real server, killed with SIGKILL and started again on the same state file. */
import assert from "node:assert/strict";
import { SqliteJournal } from "../../src/journal/sqlite_journal.ts";
import { call, refusedStart, startKlym, type Status } from "../helpers/klym_process.ts";

async function stateFile(): Promise<{ file: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "klym-restart-" });
  return {
    file: `${dir}/klym.db`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

Deno.test("after SIGKILL and a restart: the live task is interrupted with its logs, results and cursors survive", async () => {
  await using tmp = await stateFile();
  const env = { KLYM_STATE: tmp.file };
  let doneId: string, liveId: string, cursor: number, seen: Status["logs"];
  {
    await using klym = await startKlym(env);
    const client = await klym.connect();
    doneId = (await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "hello",
      prompt: "kept",
    })).task_id;
    liveId = (await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "sleep",
      params: { ms: 60_000, tick_ms: 20 },
    })).task_id;
    let status: Status;
    do {
      await new Promise((r) => setTimeout(r, 50));
      status = await call<Status>(client, "check_task_status", { task_id: liveId });
    } while (status.logs.length < 5);
    seen = status.logs;
    cursor = status.next_log_cursor;
    // Past the journal's batch delay, then the process dies without a shutdown.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(
      (await call<Status>(client, "check_task_status", { task_id: doneId })).status,
      "succeeded",
    );
    klym.signal("SIGKILL");
    await klym.exited;
  }
  {
    await using klym = await startKlym(env);
    const client = await klym.connect();
    const live = await call<Status>(client, "check_task_status", { task_id: liveId });
    assert.equal(live.status, "interrupted");
    assert.equal(live.error?.code, "interrupted");
    assert.match(live.error!.message, /Klym stopped while this task was running/);
    assert.deepEqual(
      live.logs.slice(0, seen.length).map((l) => [l.seq, l.text]),
      seen.map((l) => [l.seq, l.text]),
      "the lines read before the kill are all there, with their numbers",
    );
    const next = await call<Status>(client, "check_task_status", {
      task_id: liveId,
      log_cursor: cursor,
    });
    assert.ok(next.logs.every((l) => l.seq > cursor), "a cursor keeps working across the restart");
    assert.ok(next.logs.length > 0, "lines written in the 300 ms before the kill were kept");
    const done = await call<Status>(client, "check_task_status", { task_id: doneId });
    assert.equal(done.status, "succeeded");
    assert.deepEqual(done.result, { taskId: doneId, prompt: "kept", params: {} });
    assert.equal(done.logs.length, 3);
    const listed = await call<{ tasks: { task_id: string; status: string }[] }>(
      client,
      "list_tasks",
      { status: "interrupted" },
    );
    assert.deepEqual(listed.tasks.map((t) => t.task_id), [liveId]);
    const health = await (await fetch(`${klym.url}/healthz`)).json();
    assert.deepEqual(health.journal, { ok: true, store: tmp.file });
    assert.equal(health.tasks.interrupted, 1);
    // A new task runs as usual next to the restored ones.
    const fresh = (await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "hello",
    })).task_id;
    let status: Status;
    do {
      await new Promise((r) => setTimeout(r, 50));
      status = await call<Status>(client, "check_task_status", { task_id: fresh });
    } while (status.status !== "succeeded");

    const second = await refusedStart(env);
    assert.equal(second.code, 2, second.err);
    assert.ok(second.err.includes(`KLYM_STATE file "${tmp.file}"`), second.err);
    assert.match(second.err, new RegExp(`another Klym \\(pid ${klym.pid}`));
  }
});

Deno.test("SIGKILL during a 20 MB log flood loses only the last moments of lines", async () => {
  await using tmp = await stateFile();
  const env = { KLYM_STATE: tmp.file, KLYM_LOG_LIMIT_BYTES: String(64 * 1024 ** 2) };
  let id: string, seen = 0;
  {
    await using klym = await startKlym(env);
    const client = await klym.connect();
    id = (await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "steady_flood",
      params: { lines: 1_000_000, width: 100 },
    })).task_id;
    // Two pages read are as good as twenty: the flood runs on, and what was read must survive.
    while (seen < 2_000) {
      const status = await call<Status>(client, "check_task_status", {
        task_id: id,
        log_cursor: seen,
        max_log_lines: 1000,
      });
      assert.equal(status.status, "running");
      seen = status.next_log_cursor;
    }
    // Every line the server held this long ago has had its batch written (at most 50 ms later).
    await new Promise((r) => setTimeout(r, 300));
    klym.signal("SIGKILL");
    await klym.exited;
  }
  // The server is gone: read the file as the next one will.
  const journal = new SqliteJournal(tmp.file);
  const task = journal.restore(Date.now()).find((t) => t.id === id)!;
  journal.close();
  assert.equal(task.state.status, "interrupted");
  assert.ok(task.logs.lastSeq < 1_000_000, "killed mid-flood");
  assert.ok(task.logs.lastSeq >= seen, `line ${seen}, read 300 ms before the kill, is kept`);
  {
    await using klym = await startKlym(env);
    const client = await klym.connect();
    const status = await call<Status>(client, "check_task_status", {
      task_id: id,
      log_cursor: seen - 2,
      max_log_lines: 2,
    });
    assert.equal(status.status, "interrupted");
    assert.deepEqual(status.logs.map((l) => l.seq), [seen - 1, seen]);
  }
});

Deno.test("a damaged state file stops Klym with exit code 2 and a message naming it", async () => {
  await using tmp = await stateFile();
  await Deno.writeTextFile(tmp.file, "definitely not a database ".repeat(400));
  const { code, err } = await refusedStart({ KLYM_STATE: tmp.file });
  assert.equal(code, 2, err);
  assert.ok(err.includes(`klym: Cannot use KLYM_STATE file "${tmp.file}": it is damaged`), err);
});
