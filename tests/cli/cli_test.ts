/** The `klym` CLI run as a real subprocess against a real Klym: exit codes, text and `--json`. */
import assert from "node:assert/strict";
import { call, startKlym, type Status, waitFinal } from "../helpers/klym_process.ts";
import { VERSION } from "../../src/version.ts";
import { klymCli, klymCliLive } from "../helpers/klym_cli.ts";

/** A loopback port nothing listens on (bound, then released). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

const jsonLines = (text: string) => text.trim().split("\n").map((line) => JSON.parse(line));

Deno.test("klym --help lists every command, flag and variable; --version prints the version", async () => {
  const help = await klymCli(["--help"]);
  assert.equal(help.code, 0);
  for (
    const word of [
      "klym tasks",
      "klym show",
      "klym logs",
      "klym start",
      "klym cancel",
      "klym usage",
      "--window",
      "--status",
      "--limit",
      "--follow",
      "--prompt",
      "--param",
      "--timeout",
      "--wait",
      "--reason",
      "--url",
      "--json",
      "KLYM_URL",
      "KLYM_AUTH_TOKEN",
      "NO_COLOR",
    ]
  ) assert.ok(help.stdout.includes(word), `--help mentions ${word}`);
  const version = await klymCli(["--version"]);
  assert.deepEqual(version, { code: 0, stdout: `klym ${VERSION}\n`, stderr: "" });
});

Deno.test("klym reports usage and connection problems with exit code 2", async () => {
  const unknown = await klymCli(["tasks", "--colour"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /Unknown option "--colour"/);
  const missing = await klymCli(["show"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /"show" takes 1 argument/);
  const badStatus = await klymCli(["tasks", "--status", "done", "--url", "http://127.0.0.1:1"]);
  assert.equal(badStatus.code, 2);
  assert.match(badStatus.stderr, /"--status" must be one of queued, running/);
  const port = closedPort();
  const down = await klymCli(["tasks"], { KLYM_URL: `http://127.0.0.1:${port}` });
  assert.equal(down.code, 2);
  assert.match(
    down.stderr,
    new RegExp(`Cannot reach Klym at http://127.0.0.1:${port}: connection refused`),
  );
  const badParam = await klymCli([
    "start",
    "hello",
    "--param",
    "novalue",
    "--url",
    `http://127.0.0.1:${port}`,
  ]);
  assert.equal(badParam.code, 2);
  assert.match(badParam.stderr, /"--param" takes key=value, received "novalue"/);
  const badUrl = await klymCli(["tasks", "--url", "ftp://x"]);
  assert.equal(badUrl.code, 2);
  assert.match(badUrl.stderr, /Invalid server URL "ftp:\/\/x"/);
});

Deno.test("klym drives a running Klym: start --wait, tasks, show, logs -f, cancel, with exit codes and --json", async (t) => {
  const token = "cli-test-token-0123456789";
  await using klym = await startKlym({ KLYM_AUTH_TOKEN: token });
  const env = { KLYM_URL: klym.url, KLYM_AUTH_TOKEN: token };
  const client = await klym.connect();

  await t.step(
    "a wrong or missing token is a connection error (2) naming the variable",
    async () => {
      const run = await klymCli(["tasks"], { KLYM_URL: klym.url });
      assert.equal(run.code, 2);
      assert.match(run.stderr, /refused the request: set KLYM_AUTH_TOKEN/);
    },
  );

  await t.step("start --wait --json succeeds with the task's result (0)", async () => {
    const run = await klymCli(
      [
        "start",
        "hello",
        "--prompt",
        "from the cli",
        "--param",
        "n=3",
        "--param",
        "s=x",
        "--wait",
        "--json",
      ],
      env,
    );
    assert.equal(run.code, 0, run.stderr);
    const [task] = jsonLines(run.stdout);
    assert.equal(task.status, "succeeded");
    assert.deepEqual(task.result, {
      taskId: task.task_id,
      prompt: "from the cli",
      params: { n: 3, s: "x" },
    });
  });

  await t.step("start --wait of a failing task exits 1 and shows the error", async () => {
    const run = await klymCli(["start", "fail", "--wait"], env);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /status\s+failed/);
    assert.match(run.stdout, /error\s+task_error: .*task gave up/);
  });

  await t.step("start without --wait prints the id at once; an unknown kind is 2", async () => {
    const run = await klymCli(["start", "sleep", "--param", "ms=60000"], env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^t_[a-z0-9]+\n$/);
    const id = run.stdout.trim();
    const status = await call<Status>(client, "check_task_status", { task_id: id });
    assert.ok(["queued", "running"].includes(status.status));
    const unknown = await klymCli(["start", "no_such_kind"], env);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /UNKNOWN_KIND/);
    await call(client, "cancel_task", { task_id: id });
  });

  await t.step(
    "tasks lists newest first, filters by status, and --json is list_tasks",
    async () => {
      const text = await klymCli(["tasks", "--limit", "2"], env);
      assert.equal(text.code, 0, text.stderr);
      const rows = text.stdout.trim().split("\n");
      assert.match(rows[0]!, /^TASK\s+KIND\s+STATUS\s+AGE\s+DURATION\s+PROGRESS$/);
      assert.equal(rows.length, 3);
      assert.match(rows[1]!, /sleep\s+cancelled/);
      assert.match(rows[2]!, /fail\s+failed/);
      const json = await klymCli(["tasks", "--status", "succeeded", "--json"], env);
      const [answer] = jsonLines(json.stdout);
      assert.deepEqual(answer.tasks.map((t: { kind: string }) => t.kind), ["hello"]);
      assert.equal(answer.counts.failed, 1);
    },
  );

  await t.step(
    "logs -f follows a running task to its end, in order, stdout and stderr",
    async () => {
      const started = await call(client, "start_async_agent_task", {
        kind: "sleep",
        params: { ms: 1500, tick_ms: 100 },
      });
      const id = String(started.task_id);
      const run = await klymCli(["logs", "-f", id, "--json"], env);
      assert.equal(run.code, 0, run.stderr);
      const lines = jsonLines(run.stdout);
      const final = await waitFinal(client, id);
      assert.equal(final.status, "succeeded");
      assert.ok(lines.length >= 5, `followed ${lines.length} lines`);
      assert.deepEqual(lines.map((l) => l.text), final.allLogs.map((l) => l.text));
      assert.deepEqual(lines.map((l) => l.seq), lines.map((_, i) => i + 1));

      const hello = await call(client, "start_async_agent_task", { kind: "hello" });
      await waitFinal(client, String(hello.task_id));
      const text = await klymCli(["logs", String(hello.task_id)], env);
      assert.equal(text.code, 0);
      assert.match(text.stdout, /\d\d:\d\d:\d\d\.\d{3} out hello from hello\n/);
      assert.match(text.stdout, /\d\d:\d\d:\d\d\.\d{3} err a warning\n/);
    },
  );

  await t.step("logs -f of a task cancelled meanwhile exits 1", async () => {
    const started = await call(client, "start_async_agent_task", {
      kind: "sleep",
      params: { ms: 60_000, tick_ms: 200 },
    });
    const id = String(started.task_id);
    const following = klymCliLive(["logs", "--follow", id], env);
    await following.printed(/out tick 0\n/); // it follows the running task
    const cancel = await klymCli(["cancel", id, "--reason", "enough", "--json"], env);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.deepEqual(jsonLines(cancel.stdout), [{ task_id: id, status: "cancelled" }]);
    const run = await following.done;
    assert.equal(run.code, 1);
    assert.match(run.stdout, /out tick 0\n/);
    assert.match(run.stderr, new RegExp(`${id} cancelled`));

    const show = await klymCli(["show", id, "--json"], env);
    assert.equal(show.code, 1);
    const [task] = jsonLines(show.stdout);
    assert.deepEqual(task.error, { code: "cancelled", message: "enough" });
    const missing = await klymCli(["show", "t_nope"], env);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /TASK_NOT_FOUND/);
  });
});

/** Characters that must never reach a terminal raw from the CLI. */
// deno-lint-ignore no-control-regex
const RAW_UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\p{Cf}\p{Zl}\p{Zp}]/u;

Deno.test("text that lies on a terminal prints as escapes: one field, one row; --json parses back", async (t) => {
  await using klym = await startKlym();
  const env = { KLYM_URL: klym.url };
  const client = await klym.connect();
  const forged = 'boom\nstatus    succeeded\nresult    {"ok": true}';
  const line = "paid \u202edcba\u202c\x9b31m\u2028\u200b\ufeff\x1b[2J done";
  const progress = "half\nt_fake  echo_text  succeeded\u2029\u2066x\u2069";
  const started = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind: "echo_text",
    params: { out: [line], err: ["\x85warn\u200f"], progress, fail: forged },
  });
  const id = started.task_id;
  const final = await waitFinal(client, id);
  assert.equal(final.status, "failed");
  assert.ok(final.error!.message.includes(forged), "the task's message reached the server whole");

  await t.step(
    "show prints exactly one status row and shows the error's breaks as \\n",
    async () => {
      const run = await klymCli(["show", id], env);
      assert.equal(run.code, 1, run.stderr);
      assert.doesNotMatch(run.stdout, RAW_UNSAFE);
      const rows = run.stdout.trimEnd().split("\n");
      assert.deepEqual(rows.filter((row) => row.startsWith("status")), ["status    failed"]);
      assert.ok(!rows.some((row) => row.startsWith("result")), "no forged result row");
      const error = rows.filter((row) => row.startsWith("error"));
      assert.equal(error.length, 1);
      assert.ok(
        error[0]!.includes('boom\\nstatus    succeeded\\nresult    {"ok": true}'),
        error[0],
      );
      assert.ok(
        rows.every((row) =>
          /^(task|kind|status|created|started|finished|duration|progress|logs|error) /.test(row)
        ),
        run.stdout,
      );
      assert.match(
        run.stdout,
        /progress\s+\[.*\] 1\/2 half\\nt_fake {2}echo_text {2}succeeded\\u2029\\u2066x\\u2069\n/,
      );
    },
  );

  await t.step("tasks prints one row per task with the progress message escaped", async () => {
    const run = await klymCli(["tasks"], env);
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.stdout, RAW_UNSAFE);
    const rows = run.stdout.trimEnd().split("\n");
    assert.equal(rows.length, 2, run.stdout);
    assert.match(rows[1]!, new RegExp(`^${id}\\s+echo_text\\s+failed\\s`));
    assert.ok(rows[1]!.includes("half\\nt_fake  echo_text  succeeded\\u2029\\u2066x\\u2069"));
  });

  await t.step(
    "logs and logs -f show bidi, C1, separators and zero-width characters as escapes",
    async () => {
      const shown = "paid \\u202Edcba\\u202C\\u009B31m\\u2028\\u200B\\uFEFF\\u001B[2J done";
      for (const args of [["logs", id], ["logs", "-f", id]]) {
        const run = await klymCli(args, env);
        assert.equal(run.code, 1, run.stderr);
        assert.doesNotMatch(run.stdout + run.stderr, RAW_UNSAFE);
        assert.match(run.stdout, /^\d\d:\d\d:\d\d\.\d{3} out paid /m);
        assert.ok(run.stdout.includes(` out ${shown}\n`), run.stdout);
        assert.ok(run.stdout.includes(" err \\u0085warn\\u200F\n"), run.stdout);
        assert.equal(run.stdout.trimEnd().split("\n").length, 2);
      }
    },
  );

  await t.step(
    "--json holds no raw C1 or bidi character and parses to the original strings",
    async () => {
      const show = await klymCli(["show", id, "--json"], env);
      const tasks = await klymCli(["tasks", "--json"], env);
      const logs = await klymCli(["logs", id, "--json"], env);
      for (const run of [show, tasks, logs]) {
        assert.doesNotMatch(run.stdout, /[\u007f-\u009f\p{Cf}\p{Zl}\p{Zp}]/u);
      }
      assert.ok(
        show.stdout.includes("\\u2066") && logs.stdout.includes("\\u202Edcba\\u202C\\u009B"),
      );
      const [task] = jsonLines(show.stdout);
      assert.deepEqual(task.error, final.error);
      assert.equal(task.progress.message, progress);
      assert.deepEqual(jsonLines(tasks.stdout)[0].tasks[0].error, final.error);
      assert.deepEqual(jsonLines(logs.stdout).map((l) => l.text), [line, "\x85warn\u200f"]);
    },
  );

  await t.step("an error message from the server prints on one row of stderr", async () => {
    const run = await klymCli(["show", "t_\u202e\nstatus    succeeded"], env);
    assert.equal(run.code, 2);
    assert.doesNotMatch(run.stderr, RAW_UNSAFE);
    assert.match(run.stderr, /^klym: .*TASK_NOT_FOUND.*\n$/);
  });
});
