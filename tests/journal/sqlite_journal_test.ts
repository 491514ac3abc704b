import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import type { JournalTask } from "../../src/journal/journal.ts";
import { isKlymError } from "../../src/errors.ts";
import { SqliteJournal } from "../../src/journal/sqlite_journal.ts";
import { SCHEMA_VERSION } from "../../src/journal/schema.ts";
import { defaultStatePath } from "../../src/journal/open_journal.ts";
import { errorOf, makeRegistry, registryParts, resultOf, settled } from "../helpers/registry.ts";

async function tempFile(): Promise<{ file: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "klym-journal-" });
  return {
    file: `${dir}/state/klym.db`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);

function running(id: string, at = T0): JournalTask {
  return {
    id,
    owner: "local",
    kind: "sleep",
    model: undefined,
    prompt: "p",
    params: { ms: 1 },
    timeoutS: 60,
    createdAt: at,
    state: { status: "running", queuedAt: at, startedAt: at + 1 },
    progress: undefined,
    codeStartedAt: undefined,
  };
}

function lines(from: number, to: number, width = 20) {
  return Array.from({ length: to - from + 1 }, (_, i) => ({
    seq: from + i,
    stream: (i % 2 ? "stderr" : "stdout") as "stdout" | "stderr",
    time: T0 + from + i,
    text: `line ${from + i} ${"x".repeat(width)}`,
  }));
}

Deno.test("a task alive when the process died comes back interrupted, with its logs and progress", async () => {
  await using tmp = await tempFile();
  const first = new SqliteJournal(tmp.file);
  assert.deepEqual(first.restore(T0), []);
  const task = running("t_a");
  first.admitted(task);
  first.changed(task);
  first.logged("t_a", lines(1, 10), 1, 0);
  first.progressed({
    ...task,
    progress: { done: 3, total: 9, message: "three" },
    codeStartedAt: T0 + 5,
  });
  first.flush();
  // No close: the process "dies" here. Its lock goes with it (closing the handle stands in).
  first.close();

  const second = new SqliteJournal(tmp.file);
  const [back] = second.restore(T0 + 60_000);
  assert.equal(back?.state.status, "interrupted");
  assert.ok(back && "error" in back.state);
  assert.equal(back.state.error.code, "interrupted");
  assert.match(back.state.error.message, /was running/);
  assert.match(back.state.error.message, /2026-11-25T12:01:00\.000Z/, "says when");
  assert.equal(back.state.finishedAt, T0 + 60_000);
  assert.deepEqual(back.progress, { done: 3, total: 9, message: "three" });
  assert.equal(back.codeStartedAt, T0 + 5);
  assert.deepEqual(back.logs, { lastSeq: 10, size: 10, dropped: 0, bytes: back.logs.bytes });
  assert.deepEqual(second.readLogs("t_a", 7, 100).map((l) => [l.seq, l.stream]), [
    [8, "stderr"],
    [9, "stdout"],
    [10, "stderr"],
  ]);
  second.close();
  // Interrupted is recorded: a third start sees it as it was, not interrupted again.
  const third = new SqliteJournal(tmp.file);
  const [again] = third.restore(T0 + 120_000);
  assert.equal(again?.state.status, "interrupted");
  assert.equal("finishedAt" in again!.state && again!.state.finishedAt, T0 + 60_000);
  third.close();
});

Deno.test("lines dropped for space are not kept, and the count of dropped lines survives", async () => {
  await using tmp = await tempFile();
  const journal = new SqliteJournal(tmp.file);
  journal.admitted(running("t_b"));
  journal.logged("t_b", lines(1, 50), 1, 0);
  journal.flush();
  journal.logged("t_b", lines(51, 100), 81, 80);
  journal.close();
  const again = new SqliteJournal(tmp.file);
  const [back] = again.restore(T0);
  assert.deepEqual(back?.logs.size, 20);
  assert.equal(back?.logs.dropped, 80);
  assert.equal(again.readLogs("t_b", 0, 1000)[0]?.seq, 81);
  again.close();
});

Deno.test("a second owner of the file is refused, naming the file and the owner's pid", async () => {
  await using tmp = await tempFile();
  const owner = new SqliteJournal(tmp.file, { pid: 4242 });
  assert.throws(() => new SqliteJournal(tmp.file), (error: unknown) => {
    assert.ok(isKlymError(error, "JOURNAL_TAKEN"), String(error));
    assert.match(error.message, /KLYM_STATE/);
    assert.ok(error.message.includes(tmp.file), error.message);
    assert.match(error.message, /another Klym \(pid 4242/);
    return true;
  });
  owner.close();
  new SqliteJournal(tmp.file).close(); // released on close
});

Deno.test("a damaged file or one from a newer Klym is refused with a clear error", async () => {
  await using tmp = await tempFile();
  await Deno.mkdir(tmp.file.replace(/\/[^/]+$/, ""), { recursive: true });
  await Deno.writeTextFile(tmp.file, "not sqlite at all ".repeat(500));
  assert.throws(() => new SqliteJournal(tmp.file), (error: unknown) => {
    assert.ok(isKlymError(error, "JOURNAL_UNUSABLE"), String(error));
    assert.match(error.message, /^Cannot use KLYM_STATE file ".*klym\.db": it is damaged/);
    assert.match(error.message, /move it away/);
    return true;
  });
  await Deno.remove(tmp.file);
  new SqliteJournal(tmp.file).close();
  const db = new DatabaseSync(tmp.file);
  assert.equal(
    (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
    SCHEMA_VERSION,
  );
  db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  assert.throws(() => new SqliteJournal(tmp.file), /written by a newer Klym/);
});

Deno.test("a write error (a full file) never throws, keeps tasks running and shows in health", async () => {
  await using tmp = await tempFile();
  const journal = new SqliteJournal(tmp.file, { maxPageCount: 40 });
  await using registry = makeRegistry({ KLYM_STATE: tmp.file }, { journal });
  const task = await settled(
    registry.start({ kind: "print_lines", params: { lines: 3000, width: 200 } }),
  );
  assert.equal(task.state.status, "succeeded");
  assert.equal(task.logs.size + task.logs.dropped, 3000);
  const health = journal.health();
  assert.equal(health.ok, false);
  assert.match(health.error!, /full/);
  const next = await settled(registry.start({ kind: "hello" }));
  assert.equal(next.state.status, "succeeded", "later tasks still run");
});

Deno.test("retention applies to the journal and the file gives the space back", async () => {
  await using tmp = await tempFile();
  const journal = new SqliteJournal(tmp.file);
  for (let t = 0; t < 20; t++) {
    journal.admitted(running(`t_${t}`));
    journal.logged(`t_${t}`, lines(1, 2000, 200), 1, 0);
  }
  journal.flush();
  journal.compact();
  const size = () => {
    let bytes = 0;
    for (const suffix of ["", "-wal"]) {
      try {
        bytes += Deno.statSync(tmp.file + suffix).size;
      } catch {
        // No such file.
      }
    }
    return bytes;
  };
  const full = size();
  assert.ok(full > 8_000_000, `${full} bytes`);
  journal.forget(Array.from({ length: 19 }, (_, t) => `t_${t}`));
  journal.compact();
  const after = size();
  assert.ok(after < full / 5, `${full} bytes shrank to ${after}`);
  assert.equal(journal.readLogs("t_19", 0, 5).length, 5, "the kept task is whole");
  assert.deepEqual(journal.readLogs("t_0", 0, 5), []);
  journal.close();
});

Deno.test("a registry on a file: results, logs and saves survive a restart; retention forgets from the file", async () => {
  await using tmp = await tempFile();
  let clock = Date.now();
  const now = () => clock;
  let id: string;
  {
    await using registry = makeRegistry({ KLYM_STATE: tmp.file, KLYM_RETENTION_S: "60" }, { now });
    const task = await settled(registry.start({ kind: "hello", prompt: "p", params: { a: 1 } }));
    id = task.id;
    registryParts(registry).journal.saved({
      taskId: id,
      seq: 1,
      tool: "create_entities",
      ok: true,
      time: clock,
      reply: "{}",
    });
  }
  {
    await using registry = makeRegistry({ KLYM_STATE: tmp.file, KLYM_RETENTION_S: "60" }, { now });
    const task = registry.get(id);
    assert.equal(task.state.status, "succeeded");
    assert.deepEqual(resultOf(task), { taskId: id, prompt: "p", params: { a: 1 } });
    assert.deepEqual(task.progress, { done: 1, total: 2, message: "half way" });
    assert.deepEqual(task.logs.read(1, 10).lines.map((l) => [l.seq, l.stream, l.text]), [
      [2, "stderr", "a warning"],
      [3, "stdout", "{ nested: { n: 1 } }"],
    ]);
    assert.equal(registry.list()[0]?.id, id);
    assert.equal(registry.counts().succeeded, 1);
    assert.deepEqual(registryParts(registry).journal.readSaves(id).map((s) => s.tool), [
      "create_entities",
    ]);
    assert.equal(errorOf(task), undefined);
  }
  clock += 120_000;
  {
    await using registry = makeRegistry({ KLYM_STATE: tmp.file, KLYM_RETENTION_S: "60" }, { now });
    assert.throws(() => registry.get(id), /No task/);
  }
  {
    await using registry = makeRegistry({ KLYM_STATE: tmp.file, KLYM_RETENTION_S: "60" }, { now });
    assert.equal(registry.counts().succeeded, 0, "forgotten in the file too");
  }
});

/** Whether a record's result is read from the journal when asked, rather than held in memory. */
const keptInJournal = (state: object) =>
  typeof Object.getOwnPropertyDescriptor(state, "resultJson")?.get === "function";

Deno.test("a large result stays in the journal, not in memory, and reads back whole, also after a restart", async () => {
  await using tmp = await tempFile();
  let large: string;
  let small: string;
  {
    await using registry = makeRegistry({ KLYM_STATE: tmp.file });
    const big = await settled(registry.start({ kind: "big_result", params: { bytes: 200_000 } }));
    const tiny = await settled(registry.start({ kind: "big_result", params: { bytes: 10 } }));
    [large, small] = [big.id, tiny.id];
    assert.ok(keptInJournal(big.state), "200 kB: read from the journal when asked");
    assert.equal(resultOf(big), "r".repeat(200_000));
    assert.equal(keptInJournal(tiny.state), false, "10 bytes: kept in memory");
    assert.equal(resultOf(tiny), "r".repeat(10));
  }
  {
    await using registry = makeRegistry({ KLYM_STATE: tmp.file });
    const big = registry.get(large);
    assert.ok(keptInJournal(big.state), "restored without reading it");
    assert.equal(resultOf(big), "r".repeat(200_000));
    assert.equal(keptInJournal(registry.get(small).state), false);
    assert.equal(resultOf(registry.get(small)), "r".repeat(10));
  }
});

Deno.test("a result the journal failed to write (a full file) stays in memory, whole", async () => {
  await using tmp = await tempFile();
  const journal = new SqliteJournal(tmp.file, { maxPageCount: 40 });
  await using registry = makeRegistry({ KLYM_STATE: tmp.file }, { journal });
  const task = await settled(registry.start({ kind: "big_result", params: { bytes: 500_000 } }));
  assert.equal(journal.health().ok, false, "the write failed");
  assert.equal(keptInJournal(task.state), false);
  assert.equal(resultOf(task), "r".repeat(500_000));
});

Deno.test("with KLYM_STATE=memory every result stays in memory, a large one as UTF-8 bytes", async () => {
  await using registry = makeRegistry();
  const task = await settled(registry.start({ kind: "big_result", params: { bytes: 200_000 } }));
  // Read through a getter, as from the journal, but from bytes the record holds (memory_journal
  // has no file to read).
  assert.equal(keptInJournal(task.state), true, "not held as a string");
  assert.equal(resultOf(task), "r".repeat(200_000));
  assert.equal(resultOf(task), "r".repeat(200_000), "each read decodes it whole");
});

Deno.test("the default state file follows each platform's convention", () => {
  assert.equal(
    defaultStatePath({ HOME: "/home/u", XDG_STATE_HOME: "/x/state" }, "linux"),
    "/x/state/klym/klym.db",
  );
  assert.equal(defaultStatePath({ HOME: "/home/u" }, "linux"), "/home/u/.local/state/klym/klym.db");
  assert.equal(
    defaultStatePath({ HOME: "/Users/u" }, "darwin"),
    "/Users/u/Library/Application Support/klym/klym.db",
  );
});

Deno.test("a task's principal survives a restart, so ownership holds across it", async () => {
  await using tmp = await tempFile();
  const first = new SqliteJournal(tmp.file);
  first.restore(T0);
  first.admitted({ ...running("t_alice"), owner: "alice" });
  first.admitted(running("t_local"));
  first.close();
  const second = new SqliteJournal(tmp.file);
  const owners = Object.fromEntries(second.restore(T0 + 10).map((t) => [t.id, t.owner]));
  second.close();
  assert.deepEqual(owners, { t_alice: "alice", t_local: "local" });
});
