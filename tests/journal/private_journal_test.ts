/**
 * The journal is private: 0700 folder and 0600 files under umask 022, looser ones tightened at start,
 * an owner file that is never followed, and log lines that keep every byte across a restart.
 */
import assert from "node:assert/strict";
import { call, refusedStart, startKlym, type Status, waitFinal } from "../helpers/klym_process.ts";
import { isKlymError } from "../../src/errors.ts";
import { SqliteJournal } from "../../src/journal/sqlite_journal.ts";

const mode = (path: string) => (Deno.statSync(path).mode ?? 0) & 0o777;
const octal = (m: number) => `0${m.toString(8)}`;

async function tempDir(): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "klym-private-" });
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

/** A pid no process has: past the kernel's maximum. */
function deadPid(): number {
  return Number(Deno.readTextFileSync("/proc/sys/kernel/pid_max").trim()) + 1;
}

Deno.test("under umask 022 a running Klym's state folder is 0700 and its journal's files 0600", async () => {
  await using tmp = await tempDir();
  const folder = `${tmp.dir}/state`;
  const file = `${folder}/klym.db`;
  await using klym = await startKlym({ KLYM_STATE: file }, { umask: "022" });
  const client = await klym.connect();
  const started = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind: "hello",
  });
  await waitFinal(client, started.task_id);
  // A file the server makes with no mode of its own shows the umask is in effect.
  const probe = `${tmp.dir}/probe`;
  await new Deno.Command("sh", { args: ["-c", `umask 022 && : > ${probe}`] }).output();
  assert.equal(mode(probe), 0o644, "the umask gives others read access by default");

  assert.equal(octal(mode(folder)), "0700");
  for (const name of ["klym.db", "klym.db-wal", "klym.db.owner"]) {
    assert.equal(octal(mode(`${folder}/${name}`)), "0600", name);
  }
  const owner = JSON.parse(Deno.readTextFileSync(`${file}.owner`));
  assert.equal(owner.pid, klym.pid);
  for (const entry of Deno.readDirSync(folder)) {
    assert.equal(octal(mode(`${folder}/${entry.name}`)), "0600", `every file: ${entry.name}`);
  }
});

Deno.test("a folder and files an older Klym left 0755 and 0644 are made 0700 and 0600 at start, with a warning for each", async () => {
  await using tmp = await tempDir();
  const folder = `${tmp.dir}/state`;
  const file = `${folder}/klym.db`;
  new SqliteJournal(file).close();
  // As an older Klym left them: open modes, and the owner file of a process long gone.
  await Deno.writeTextFile(`${file}.owner`, JSON.stringify({ pid: deadPid(), since: "then" }));
  Deno.chmodSync(folder, 0o755);
  Deno.chmodSync(file, 0o644);
  Deno.chmodSync(`${file}.owner`, 0o644);

  await using klym = await startKlym({ KLYM_STATE: file }, { umask: "022" });
  assert.equal(octal(mode(folder)), "0700");
  assert.equal(octal(mode(file)), "0600");
  assert.equal(octal(mode(`${file}.owner`)), "0600");
  assert.equal(JSON.parse(Deno.readTextFileSync(`${file}.owner`)).pid, klym.pid, "stale: replaced");
  const warnings = klym.logs.filter((line) => /"level":"WARN"/.test(line));
  const about = (path: string, old: string) =>
    warnings.some((line) => {
      const { properties } = JSON.parse(line);
      return properties.path === path && properties.old === old;
    });
  assert.ok(about(folder, "0755"), `a warning names the folder and 0755:\n${warnings.join("\n")}`);
  assert.ok(about(file, "0644"), `a warning names the file and 0644:\n${warnings.join("\n")}`);
});

Deno.test("a planted owner-file link is never followed: Klym refuses to start, naming it, and the target is unchanged", async () => {
  await using tmp = await tempDir();
  const folder = `${tmp.dir}/state`;
  const file = `${folder}/klym.db`;
  await Deno.mkdir(folder, { mode: 0o700 });
  const outside = `${tmp.dir}/authorized_keys`;
  await Deno.writeTextFile(outside, "precious\n");
  const missing = `${tmp.dir}/never_created`;

  for (const target of [outside, missing]) {
    await Deno.remove(`${file}.owner`).catch(() => {});
    Deno.symlinkSync(target, `${file}.owner`);
    const run = await refusedStart({ KLYM_STATE: file });
    assert.equal(run.code, 2, run.err);
    assert.ok(run.err.includes(`${file}.owner`), run.err);
    assert.match(run.err, /is a symbolic link, which Klym never follows or writes through/);
    assert.equal(Deno.readTextFileSync(outside), "precious\n", "the link's target is unchanged");
    assert.ok(Deno.lstatSync(`${file}.owner`).isSymlink, "the link itself is left for a person");
    assert.throws(() => Deno.statSync(missing), Deno.errors.NotFound, "nothing made through it");
  }
  await Deno.remove(`${file}.owner`);
  await using klym = await startKlym({ KLYM_STATE: file });
  assert.equal(JSON.parse(Deno.readTextFileSync(`${file}.owner`)).pid, klym.pid, "once it is gone");
});

Deno.test("a log line with NUL bytes reads back byte-identical before and after a restart", async () => {
  await using tmp = await tempDir();
  const env = { KLYM_STATE: `${tmp.dir}/klym.db` };
  const lines = ["a\0b", "\0", "\0\0tail after NULs \u202e\x85 é 🙂", "no NUL"];
  let id: string;
  let before: Status["logs"];
  {
    await using klym = await startKlym(env);
    const client = await klym.connect();
    id = (await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "echo_text",
      params: { out: lines },
    })).task_id;
    before = (await waitFinal(client, id)).allLogs;
    assert.deepEqual(before.map((l) => l.text), lines);
  }
  await using klym = await startKlym(env);
  const client = await klym.connect();
  const after = await call<Status>(client, "check_task_status", { task_id: id });
  assert.deepEqual(after.logs, before, "every byte of every line, NUL included");
});

Deno.test("a journal folder that holds other files keeps its mode; the journal's files are made 0600", async () => {
  await using tmp = await tempDir();
  Deno.chmodSync(tmp.dir, 0o755);
  await Deno.writeTextFile(`${tmp.dir}/notes.txt`, "the user's own\n");
  const file = `${tmp.dir}/klym.db`;
  await Deno.writeTextFile(`${file}.owner`, "{}\n");
  Deno.chmodSync(`${file}.owner`, 0o644);
  const journal = new SqliteJournal(file);
  try {
    assert.equal(octal(mode(tmp.dir)), "0755", "the user's folder is left as it is");
    assert.equal(octal(mode(file)), "0600");
    assert.equal(octal(mode(`${file}.owner`)), "0600");
  } finally {
    journal.close();
  }
});

Deno.test("an owner file that is a folder is refused naming it; a stale plain one is replaced", async () => {
  await using tmp = await tempDir();
  const file = `${tmp.dir}/klym.db`;
  await Deno.mkdir(`${file}.owner`);
  assert.throws(() => new SqliteJournal(file), (error: unknown) => {
    assert.ok(isKlymError(error, "JOURNAL_UNUSABLE"), String(error));
    assert.ok(error.message.includes(`"${file}.owner" is a folder`), error.message);
    assert.match(error.message, /Set KLYM_STATE to another file/);
    return true;
  });
  await Deno.remove(`${file}.owner`);
  await Deno.writeTextFile(`${file}.owner`, JSON.stringify({ pid: deadPid(), since: "then" }));
  const journal = new SqliteJournal(file, { pid: 4242 });
  assert.equal(JSON.parse(Deno.readTextFileSync(`${file}.owner`)).pid, 4242);
  journal.close();
  assert.throws(() => Deno.lstatSync(`${file}.owner`), Deno.errors.NotFound, "removed on close");
});

Deno.test("free text with NUL bytes survives reopening the file: log lines, prompts, saves", async () => {
  await using tmp = await tempDir();
  const file = `${tmp.dir}/klym.db`;
  const prompt = "do\0this";
  {
    const journal = new SqliteJournal(file);
    journal.admitted({
      id: "t_nul",
      owner: "local",
      kind: "hello",
      model: undefined,
      prompt,
      params: { s: "x\0y" },
      timeoutS: 60,
      createdAt: 1,
      state: { status: "queued", queuedAt: 1 },
      progress: undefined,
      codeStartedAt: undefined,
    });
    journal.logged("t_nul", [{ seq: 1, stream: "stdout", time: 2, text: "\0a\0" }], 1, 0);
    journal.saved({ taskId: "t_nul", seq: 1, tool: "write", ok: true, time: 3, reply: "r\0s" });
    journal.close();
  }
  const journal = new SqliteJournal(file);
  try {
    const [task] = journal.restore(10);
    assert.equal(task?.prompt, prompt);
    assert.deepEqual(task?.params, { s: "x\0y" });
    assert.equal(task?.logs.bytes, 3 + 64, "bytes count the whole line");
    assert.deepEqual(journal.readLogs("t_nul", 0, 10).map((l) => l.text), ["\0a\0"]);
    assert.equal(journal.readSaves("t_nul")[0]?.reply, "r\0s");
  } finally {
    journal.close();
  }
});
