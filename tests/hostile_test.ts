/**
 * Hostile task code, one fixture per attack (tests/fixtures/hostile/), against the real server:
 * none of it may stall or kill the server, read the user's files, reach anything but grynya, or
 * spend beyond its limits. Each test names the case of the sandbox issue it holds.
 */
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/client";
import {
  call,
  callError,
  childPids,
  cpuSeconds,
  REPO,
  sharedKlym,
  startKlym,
  type Status,
  waitFinal,
  waitLogged,
} from "./helpers/klym_process.ts";
import { answerTimes, assertAnswersKeptUp } from "./helpers/answer_times.ts";
import { startScriptedModel } from "./helpers/scripted_openai.ts";
import { freePort } from "./peers/peers.ts";

const HOSTILE = `${REPO}tests/fixtures/hostile/`;
const hostile = (env: Record<string, string> = {}) =>
  startKlym({ KLYM_TASKS_DIR: HOSTILE, ...env });
/** The file's one server of the hostile fixtures with no other setting. */
const shared = sharedKlym({ KLYM_TASKS_DIR: HOSTILE });
/** The same, with task processes held to 256 MB. */
const memoryCapped = sharedKlym({ KLYM_TASKS_DIR: HOSTILE, KLYM_TASK_MEMORY_MB: "256" });

async function run(
  client: Client,
  kind: string,
  params: Record<string, unknown> = {},
  timeoutMs = 30_000,
) {
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind,
    params,
  });
  return await waitFinal(client, task_id, timeoutMs);
}

Deno.test("1: a task that lies about the time cannot kill the server or break list_tasks", async () => {
  await using client = await shared.client();
  const before = Date.now();
  const final = await run(client, "forge_time");
  assert.equal(final.status, "succeeded");
  assert.deepEqual(final.result, { now: 1e20 }, "the task's own clock is its own business");
  for (const line of final.allLogs) {
    const time = Date.parse(line.time);
    assert.ok(time >= before - 1000 && time <= Date.now() + 1000, `server time: ${line.time}`);
  }
  assert.deepEqual(final.allLogs.map((l) => l.text), ["forged", "after the forgery"]);
  const listed = await call<{ tasks: { task_id: string; code_started_at?: string }[] }>(
    client,
    "list_tasks",
    {},
  );
  const listing = listed.tasks.find((t) => t.task_id === final.task_id)!;
  assert.ok(Date.parse(listing.code_started_at!) <= Date.now());
});

Deno.test("2: output in any shape never starves the server, and cancel works meanwhile", async () => {
  await using klym = await hostile({ KLYM_MAX_CONCURRENT: "4", KLYM_WARM_SPARES: "0" });
  const client = await klym.connect();
  const idle = await answerTimes(client, 40);
  // One flood of each shape, all four at once: the server reads every shape side by side.
  const shapes = ["newlines", "long_line", "short_lines", "invalid_utf8"];
  const ids: string[] = [];
  for (const shape of shapes) {
    const started = await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "flood",
      // Until cancelled: on a loaded machine a bounded flood could end before the cancel.
      params: { shape, ms: 3_600_000 },
    });
    ids.push(started.task_id);
  }
  // Wait until every flood is under way.
  for (const id of ids) await waitLogged(client, id);
  const flooded = await answerTimes(client, 40);
  assertAnswersKeptUp(idle, flooded, { medianMs: 2000, slowestMs: 2000 }, "during the floods");
  const cancelAt = Date.now();
  for (const id of ids) await call(client, "cancel_task", { task_id: id });
  for (const id of ids) {
    const final = await waitFinal(client, id);
    assert.equal(final.status, "cancelled");
    const took = Date.parse(final.finished_at!) - cancelAt;
    assert.ok(took < 10_000, `cancel went through the flood after ${took} ms`);
  }
  for (const [i, id] of ids.entries()) {
    const sample = await call<Status>(client, "check_task_status", {
      task_id: id,
      max_log_lines: 5,
    });
    assert.ok(sample.logs.length > 0, `${shapes[i]} logged`);
    for (const line of sample.logs) assert.ok(line.text.length <= 16_384 + 64, shapes[i]);
  }
});

Deno.test("3: a partial line before the result is a log line, not a lost result", async () => {
  await using client = await shared.client();
  const final = await run(client, "partial_line");
  assert.equal(final.status, "succeeded");
  assert.deepEqual(final.result, { done: true });
  assert.deepEqual(final.allLogs.map((l) => [l.stream, l.text]), [["stdout", "progress 45%"]]);
  assert.ok(
    !final.allLogs.some((l) => l.text.includes("\u001e")),
    "the channel marker stays hidden",
  );
});

Deno.test("4: task code reads no file, from its first line on, with or without warm spares", async (t) => {
  for (const spares of ["0", "1"]) {
    await t.step(`KLYM_WARM_SPARES=${spares}`, async () => {
      await using klym = await hostile({ KLYM_WARM_SPARES: spares });
      const client = await klym.connect();
      const final = await run(client, "escape_read");
      assert.equal(final.status, "succeeded", JSON.stringify(final.error));
      const result = final.result as Record<string, Record<string, string> | string>;
      for (const phase of ["atLoad", "inTask"]) {
        for (const [what, how] of Object.entries(result[phase] as Record<string, string>)) {
          assert.match(how, /^NotCapable: Requires read access/, `${phase} ${what}: ${how}`);
        }
      }
      for (const [what, how] of Object.entries(result.dynamic as Record<string, string>)) {
        assert.notEqual(how, "allowed", `import of ${what}`);
      }
      assert.notEqual(result.query, "granted", "patching the revoke function gave nothing back");
    });
  }
});

Deno.test("4: links that lead out of the tasks folder are refused at start; folder kinds load", async () => {
  const dir = await Deno.makeTempDir();
  const outside = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${outside}/secret.ts`, `export default () => "secret";\n`);
    await Deno.mkdir(`${dir}/tool`);
    await Deno.writeTextFile(
      `${dir}/tool/main.ts`,
      `import { n } from "./n.ts";\nexport default () => n;\n`,
    );
    await Deno.writeTextFile(`${dir}/tool/n.ts`, `export const n = 42;\n`);
    await using klym = await startKlym({ KLYM_TASKS_DIR: dir });
    const client = await klym.connect();
    assert.equal((await run(client, "tool")).result, 42, "a folder kind with a helper module");
    await Deno.symlink(`${outside}/secret.ts`, `${dir}/linked.ts`);
    assert.match(
      await callError(client, "start_async_agent_task", { kind: "linked" }),
      /KIND_OUTSIDE_TASKS_DIR: Cannot start task: kind "linked": linked\.ts leads outside the tasks folder/,
    );
    await Deno.remove(`${dir}/linked.ts`);
    await Deno.symlink(`${outside}/secret.ts`, `${dir}/tool/secret.ts`);
    assert.match(
      await callError(client, "start_async_agent_task", { kind: "tool" }),
      /KIND_OUTSIDE_TASKS_DIR: .*has links that lead outside it.*: tool\/secret\.ts;/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

/** A tasks folder of its own (a test swaps files in it): `sleep` and the `swap_data` folder kind. */
async function swappableTasks(): Promise<{ dir: string; outside: string } & AsyncDisposable> {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  await Deno.copyFile(`${HOSTILE}sleep.ts`, `${dir}/sleep.ts`);
  await Deno.mkdir(`${dir}/swap_data`);
  for (const name of ["main.ts", "data.json"]) {
    await Deno.copyFile(`${HOSTILE}swap_data/${name}`, `${dir}/swap_data/${name}`);
  }
  return {
    dir,
    outside: `${REPO}tests/fixtures/outside_tasks`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

async function waitStatus(client: Client, taskId: string, status: string): Promise<void> {
  while ((await call<Status>(client, "check_task_status", { task_id: taskId })).status !== status) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("4: a link swapped in while the task waits in the queue fails it; nothing outside is read or run", async (t) => {
  await using tasks = await swappableTasks();
  await using klym = await startKlym({ KLYM_TASKS_DIR: tasks.dir, KLYM_MAX_CONCURRENT: "1" });
  const client = await klym.connect();
  const start = (kind: string) =>
    call<{ task_id: string }>(client, "start_async_agent_task", { kind, params: {} });
  const unchanged = await run(client, "swap_data");
  assert.deepEqual(unchanged.result, { inside: true }, JSON.stringify(unchanged.error));
  for (
    const [file, target, marker] of [
      ["data.json", "secret.json", "OUTSIDE-SECRET-7f3a"],
      ["main.ts", "module.ts", "OUTSIDE-MODULE-RAN-7f3a"],
    ] as const
  ) {
    await t.step(`swap_data/${file} swapped for a link to ${target}`, async () => {
      const holder = await start("sleep");
      await waitStatus(client, holder.task_id, "running");
      const swapped = await start("swap_data");
      assert.equal(
        (await call<Status>(client, "check_task_status", { task_id: swapped.task_id })).status,
        "queued",
        "the slot is held: the task waits in the queue",
      );
      const path = `${tasks.dir}/swap_data/${file}`;
      const original = await Deno.readFile(path);
      await Deno.remove(path);
      await Deno.symlink(`${tasks.outside}/${target}`, path);
      await call(client, "cancel_task", { task_id: holder.task_id });
      const final = await waitFinal(client, swapped.task_id);
      assert.equal(final.status, "failed", JSON.stringify(final));
      assert.equal(final.error?.code, "KIND_OUTSIDE_TASKS_DIR", JSON.stringify(final.error));
      assert.match(
        final.error!.message,
        new RegExp(`swap_data/${file.replace(".", "\\.")} leads outside the tasks folder`),
      );
      const seen = JSON.stringify(final);
      assert.ok(!seen.includes(marker), `the outside file reached the client: ${seen}`);
      assert.ok(!seen.includes(tasks.dir) && !seen.includes(tasks.outside), seen);
      await Deno.remove(path);
      await Deno.writeFile(path, original);
    });
  }
  const restored = await run(client, "swap_data");
  assert.deepEqual(restored.result, { inside: true }, "the kind runs again once the link is gone");
});

Deno.test("7: a failed task's error keeps its own frames, relative, and no path of the server's machine", async () => {
  await using client = await shared.client();
  const final = await run(client, "boom");
  assert.equal(final.status, "failed");
  assert.equal(final.error?.code, "task_error");
  assert.equal(
    final.error?.message,
    "Error: boom\n    at boom (boom.ts:3:9)\n    at default (boom.ts:6:3)",
  );
  const unparsed = await run(client, "bad_syntax");
  assert.equal(unparsed.error?.code, "load_error", JSON.stringify(unparsed.error));
  assert.match(unparsed.error!.message, /^SyntaxError: [\s\S]*\n {4}at bad_syntax\.ts:3:\d+$/);
  const refusal = await callError(client, "start_async_agent_task", { kind: "nested_worker" });
  assert.match(
    refusal,
    /KIND_IMPORT_REFUSED: Cannot start task: kind "nested_worker": nested_worker\.ts:3 imports/,
  );
  for (const text of [JSON.stringify(final), JSON.stringify(unparsed), refusal]) {
    assert.ok(!text.includes("file://") && !text.includes(REPO), text);
    assert.ok(!/\/tmp\/|klym-kinds-/.test(text), text);
  }
});

Deno.test("5: no storage without a permission: no Cache API, no nested Workers, no stdin", async () => {
  await using client = await shared.client();
  const final = await run(client, "storage");
  assert.deepEqual(final.result, {
    caches: "undefined",
    CacheStorage: "undefined",
    Worker: "undefined",
    internal: "undefined/undefined",
    stdin: "null",
    open: "TypeError",
  });
});

Deno.test("6: a task can neither listen on grynya's port nor see its token", async () => {
  const port = freePort();
  const token = "grynya-secret-token-4242";
  await using klym = await hostile({
    KLYM_GRYNYA_URL: `http://127.0.0.1:${port}/sse`,
    KLYM_GRYNYA_TOKEN: token,
  });
  const client = await klym.connect();
  const final = await run(client, "net_escape", { port });
  const result = final.result as Record<string, string>;
  assert.match(result.listen!, /^NotCapable: Requires net access/);
  assert.match(result.fetch!, /^NotCapable: Requires net access/, "the Worker holds no allowance");
  assert.ok(!JSON.stringify(final).includes(token));
  for (const pid of childPids(klym.pid)) {
    const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
    const environ = await Deno.readTextFile(`/proc/${pid}/environ`).catch(() => "");
    assert.ok(!cmdline.includes(token) && !environ.includes(token), "not in a task process");
  }
});

Deno.test("7: memory outside the heap is held to KLYM_TASK_MEMORY_MB and ends as out_of_memory", async (t) => {
  await using client = await memoryCapped.client();
  for (const what of ["arraybuffer", "wasm"]) {
    await t.step(what, async () => {
      const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
        kind: "hoard",
        params: { what },
      });
      let peak = 0;
      let final: Status;
      do {
        final = await call<Status>(client, "check_task_status", { task_id });
        peak = Math.max(peak, final.progress?.done ?? 0);
        await new Promise((r) => setTimeout(r, 10));
      } while (final.status === "running" || final.status === "queued");
      assert.equal(final.status, "failed");
      assert.equal(final.error?.code, "out_of_memory", final.error?.message);
      assert.match(final.error!.message, /KLYM_TASK_MEMORY_MB/);
      // 1.6 GB was reachable before; the cap plus what 16 MB steps add between two checks now.
      // (On a loaded machine the task can pass the cap between two polls: progress seen may be 0;
      // out_of_memory above already says it grew past the cap.)
      assert.ok(peak < 256 + 256, `allocated ${peak} MB under a 256 MB cap`);
    });
  }
});

Deno.test("8: results are kept as text within KLYM_RETAINED_BYTES; batches are refused", async () => {
  await using klym = await hostile({
    KLYM_RETAINED_BYTES: String(4 * 1024 * 1024),
    KLYM_MAX_CONCURRENT: "4",
  });
  const client = await klym.connect();
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) {
    const final = await run(client, "nested_result", { bytes: 1_000_000 });
    assert.equal(final.status, "succeeded");
    ids.push(final.task_id);
  }
  const { counts } = await call<{ counts: Record<string, number> }>(client, "list_tasks", {});
  assert.ok(counts.succeeded! >= 3 && counts.succeeded! <= 4, `${counts.succeeded} kept`);
  assert.match(
    await callError(client, "check_task_status", { task_id: ids[0]! }),
    /TASK_NOT_FOUND: .*KLYM_RETAINED_BYTES/,
  );
  const newest = await call<Status>(client, "check_task_status", { task_id: ids.at(-1)! });
  assert.equal((newest.result as unknown[]).length, 333_333);

  const batch = Array.from({ length: 3 }, (_, i) => ({
    jsonrpc: "2.0",
    id: i + 1,
    method: "tools/call",
    params: { name: "list_tasks", arguments: {} },
  }));
  const response = await fetch(`${klym.url}/mcp`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify(batch),
  });
  assert.equal(response.status, 400);
  const body = await response.json();
  assert.equal(body.error.code, -32600);
  assert.match(body.error.message, /batch/i);
});

Deno.test("8: every answer stays within KLYM_MAX_ANSWER_BYTES", async () => {
  await using klym = await startKlym({
    KLYM_MAX_ANSWER_BYTES: String(2 * (1024 * 1024 + 16384) + 65536),
    KLYM_LOG_LIMIT_BYTES: String(8 * 1024 * 1024),
  });
  const client = await klym.connect();
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind: "print_lines",
    params: { lines: 1000, width: 8000 },
  });
  await waitFinal(client, task_id, 60_000).catch(() => {});
  const page = await call<Status & { more_logs: boolean }>(client, "check_task_status", {
    task_id,
    max_log_lines: 1000,
  });
  assert.ok(page.logs.length > 0 && page.logs.length < 1000, `${page.logs.length} lines`);
  assert.equal(page.more_logs, true);
  const bytes = new TextEncoder().encode(JSON.stringify(page)).length;
  assert.ok(bytes <= 2 * 1024 * 1024, `${bytes} bytes of structured content`);
});

Deno.test("9: model spending is enforced in the server: calls in flight, max_tokens, budgets, size", async (t) => {
  let inFlight = 0;
  let peak = 0;
  await using model = startScriptedModel(async () => {
    peak = Math.max(peak, ++inFlight);
    await new Promise((r) => setTimeout(r, 300));
    inFlight--;
    return { text: "ok" };
  });
  await using klym = await hostile({
    KLYM_MODEL: "openai-compatible:scripted",
    KLYM_OPENAI_COMPATIBLE_URL: model.baseUrl,
    KLYM_LLM_RETRIES: "0",
    KLYM_TASK_LLM_CONCURRENCY: "3",
    KLYM_LLM_MAX_OUTPUT_TOKENS: "100",
    KLYM_TASK_MAX_TOKENS: "2000",
    KLYM_TASK_MAX_LLM_CALLS: "7",
    KLYM_MAX_LLM_REQUEST_BYTES: "2048",
  });
  const client = await klym.connect();
  await t.step("at most KLYM_TASK_LLM_CONCURRENCY in flight; max_tokens clamped", async () => {
    const final = await run(client, "llm_storm", { calls: 20 });
    const codes = final.result as Record<string, number>;
    // Never more than 3 at once; a call made when 3 are out is refused, not queued (on a loaded
    // machine the 20 calls may reach the server after the first ones were answered).
    assert.equal(peak, 3);
    assert.equal(codes.ok! + codes.too_many_model_calls!, 20, JSON.stringify(codes));
    assert.ok(codes.ok! >= 3 && codes.too_many_model_calls! >= 1, JSON.stringify(codes));
    for (const request of model.requests) {
      const asked = request.max_tokens ?? request.max_completion_tokens;
      assert.ok(asked !== undefined && asked <= 100, `max_tokens ${asked}`);
    }
  });
  await t.step("the token budget of a custom kind", async () => {
    const final = await run(client, "llm_serial", { text: "y".repeat(1800) });
    const result = final.result as { answered: number; code: string; message: string };
    assert.equal(result.code, "token_budget");
    assert.match(result.message, /its budget is 2000 .*KLYM_TASK_MAX_TOKENS/);
    assert.ok(result.answered >= 2 && result.answered <= 5, `${result.answered} answered`);
  });
  await t.step("the call budget of a custom kind", async () => {
    const final = await run(client, "llm_serial", { text: "z" });
    const result = final.result as { answered: number; code: string };
    assert.deepEqual([result.answered, result.code], [7, "model_call_budget"]);
  });
  await t.step("a model request over KLYM_MAX_LLM_REQUEST_BYTES", async () => {
    const final = await run(client, "llm_serial", { text: "w".repeat(4000) });
    const result = final.result as { answered: number; code: string; message: string };
    assert.deepEqual([result.answered, result.code], [0, "llm_request_too_large"]);
    assert.match(result.message, /the limit is 2048 \(KLYM_MAX_LLM_REQUEST_BYTES\)/);
  });
});

Deno.test("10: messages around ctx are bounded or fail the task as protocol_violation", async (t) => {
  await using client = await shared.client();
  await t.step("a 900 KB log line is cut to KLYM_MAX_LOG_LINE_BYTES", async () => {
    const final = await run(client, "forge_protocol", { what: "long_line" });
    assert.equal(final.status, "succeeded");
    assert.equal(final.allLogs.length, 1);
    assert.ok(new TextEncoder().encode(final.allLogs[0]!.text).length <= 16_384);
    assert.match(final.allLogs[0]!.text, /bytes cut\]$/);
  });
  for (const what of ["garbage", "second_running", "bad_progress", "fake_result"]) {
    await t.step(what, async () => {
      const final = await run(client, "forge_protocol", { what });
      assert.equal(final.status, "failed");
      assert.equal(final.error?.code, "protocol_violation", final.error?.message);
    });
  }
  // The server took none of it badly.
  assert.ok(Array.isArray((await call<{ tasks: unknown[] }>(client, "list_tasks", {})).tasks));
});

Deno.test("/healthz tells only that Klym is up to a caller without the token", async () => {
  const token = "t".repeat(32);
  await using klym = await startKlym({ KLYM_AUTH_TOKEN: token });
  assert.deepEqual(await (await fetch(`${klym.url}/healthz`)).json(), { ok: true });
  const full = await (await fetch(`${klym.url}/healthz`, {
    headers: { authorization: `Bearer ${token}` },
  })).json();
  assert.equal(full.ok, true);
  assert.equal(typeof full.tasks, "object");
});

Deno.test("7: a task that keeps its host's main thread busy still cannot pass KLYM_TASK_MEMORY_MB", async () => {
  await using client = await memoryCapped.client();
  const final = await run(
    client,
    "stall_hoard",
    { count: 30, refs: 200_000, allocMb: 1536 },
    60_000,
  );
  assert.equal(final.error?.code, "out_of_memory", JSON.stringify(final.error));
  // The figure is rounded to whole MB: a process just over the cap reads "used 256 MB".
  const used = Number(/used (\d+) MB, more than 256 MB/.exec(final.error!.message)?.[1]);
  assert.ok(used >= 256 && used < 256 + 256, `the process reached ${used} MB under a 256 MB cap`);
});

Deno.test("5: Node's worker_threads, process and I/O modules are refused to task code", async (t) => {
  await using client = await shared.client();
  await t.step("a kind that imports node:worker_threads is refused at start", async () => {
    assert.match(
      await callError(client, "start_async_agent_task", { kind: "nested_worker" }),
      /KIND_IMPORT_REFUSED: .*nested_worker\.ts:3 imports "node:worker_threads", which is not available/,
    );
  });
  await t.step("a nested Worker reached at run time can store nothing", async () => {
    const final = await run(client, "nested_cache");
    const nested = String((final.result as { nested: string }).nested);
    assert.doesNotMatch(nested, /^stored/, nested);
  });
  for (
    const name of ["worker_threads", "process", "fs", "child_process", "v8", "vm", "os", "net"]
  ) {
    await t.step(`import("node:${name}")`, async () => {
      const final = await run(client, "node_modules", { name });
      const result = final.result as { error?: string };
      assert.match(result.error ?? "", new RegExp(`node:${name} is not available to task code`));
    });
  }
  await t.step("computation-only modules load", async () => {
    for (const name of ["path", "util", "buffer", "events", "crypto"]) {
      const final = await run(client, "node_modules", { name });
      assert.deepEqual(final.result, { loaded: true }, name);
    }
  });
});

Deno.test("3: every console method is captured, in call order, and Node's process is gone", async () => {
  await using client = await shared.client();
  const final = await run(client, "raw_output");
  assert.deepEqual(final.allLogs.map((l) => [l.stream, l.text]), [
    ["stdout", "1 captured"],
    ["stdout", "2 console.count: 1"],
    ["stdout", "3 console.dirxml"],
    ["stderr", "Assertion failed: 4 console.assert"],
    ["stdout", "5 console.group"],
    ["stdout", "  6 inside the group"],
    ["stdout", "7 process is undefined"],
  ]);
});

Deno.test("8: many finished tasks with large params cost nothing per end or sweep", async () => {
  await using klym = await hostile({ KLYM_MAX_CONCURRENT: "1", KLYM_WARM_SPARES: "0" });
  const client = await klym.connect();
  await call(client, "start_async_agent_task", { kind: "sleep" });
  // 87,000 empty arrays: 261 KB of JSON, within KLYM_MAX_PARAMS_BYTES, slow to measure.
  const params = { a: Array.from({ length: 87_000 }, () => []) };
  const ids: string[] = [];
  for (let i = 0; i < 60; i++) {
    ids.push(
      (await call<{ task_id: string }>(client, "start_async_agent_task", { kind: "sleep", params }))
        .task_id,
    );
  }
  const cancels: number[] = [];
  for (const id of ids) {
    const t0 = performance.now();
    await call(client, "cancel_task", { task_id: id });
    cancels.push(performance.now() - t0);
  }
  // Each end measures only its own task: the last cancel costs what the first did.
  const first = cancels.slice(0, 10).reduce((a, b) => a + b) / 10;
  const last = cancels.slice(-10).reduce((a, b) => a + b) / 10;
  assert.ok(
    last < first * 3 + 20,
    `first cancels ${first.toFixed(1)} ms, last ${last.toFixed(1)} ms`,
  );
  const cpu0 = cpuSeconds(klym.pid);
  await new Promise((r) => setTimeout(r, 3000));
  const idle = (cpuSeconds(klym.pid) - cpu0) / 3;
  assert.ok(idle < 0.2, `an idle server burns ${(idle * 100).toFixed(0)}% CPU`);
});
