/** The metrics' labels stay bounded whatever comes from outside, and each figure counts what it says. */
import assert from "node:assert/strict";
import { KlymMetrics } from "../../src/metrics/klym_metrics.ts";
import { LabelValues, OTHER } from "../../src/metrics/label_values.ts";
import type { TaskRecord } from "../../src/tasks/task_store.ts";
import { IDLE_SOURCES } from "../helpers/metric_sources.ts";

const sources = IDLE_SOURCES;

function task(owner: string, kind = "hello"): TaskRecord {
  const now = Date.now();
  return {
    id: `t_${owner}_${kind}`,
    owner,
    kind,
    createdAt: now,
    state: { status: "queued", queuedAt: now },
  } as unknown as TaskRecord;
}

/** The series of `name` in the text format, without HELP and TYPE lines. */
function series(text: string, name: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

Deno.test("a label keeps KLYM_METRICS_MAX_LABEL_VALUES values; the next one is other", () => {
  const labels = new LabelValues(2);
  assert.equal(labels.of("alice"), "alice");
  assert.equal(labels.of("bob"), "bob");
  assert.equal(labels.of("carol"), OTHER, "one past the limit");
  assert.equal(labels.of("alice"), "alice", "a value already kept stays");
  assert.equal(labels.of("x".repeat(1000)), OTHER);
  assert.equal(new LabelValues(1).of("x".repeat(1000)).length, 128, "a value is cut");
});

Deno.test("a client naming endless models makes no more series than the limit allows", async () => {
  const metrics = new KlymMetrics({ maxLabelValues: 3, version: "test", sources });
  const t = task("alice");
  for (let i = 0; i < 100; i++) {
    metrics.modelCall(t, {
      model: `client-model-${i}`,
      outcome: "ok",
      inputTokens: 1,
      outputTokens: 2,
      startedAt: 0,
      endedAt: 1,
    });
  }
  const text = (await metrics.text()).body;
  const calls = series(text, "klym_model_calls_total");
  assert.equal(calls.length, 4, calls.join("\n"));
  assert.ok(calls.some((l) => l.includes('model="other"') && l.endsWith(" 97")), calls.join("\n"));
  assert.equal(series(text, "klym_model_output_tokens_total").length, 4);
});

Deno.test("refused model calls are counted by code; a code Klym does not know is other", async () => {
  const metrics = new KlymMetrics({ maxLabelValues: 10, version: "test", sources });
  const call = { model: "m", inputTokens: 0, outputTokens: 0, startedAt: 0, endedAt: 0 };
  metrics.modelCall(task("alice"), { ...call, outcome: "refused", code: "token_budget" });
  metrics.modelCall(task("alice"), { ...call, outcome: "refused", code: "made-up\ncode" });
  const text = (await metrics.text()).body;
  assert.deepEqual(series(text, "klym_model_refusals_total").sort(), [
    'klym_model_refusals_total{principal="alice",model="m",code="other"} 1',
    'klym_model_refusals_total{principal="alice",model="m",code="token_budget"} 1',
  ]);
});

Deno.test("grynya activity from a host is counted under known operations and codes only", async () => {
  const metrics = new KlymMetrics({ maxLabelValues: 10, version: "test", sources });
  const t = task("alice");
  metrics.grynya(t, { what: "connect", outcome: "ok", ms: 5 });
  metrics.grynya(t, { what: "reconnect", outcome: "grynya_unreachable", ms: 5 });
  metrics.grynya(t, { what: "call", op: "call_tool", outcome: "grynya_timeout", ms: 800 });
  metrics.grynya(t, { what: "call", op: "forged-op", outcome: "forged", ms: 1 });
  const text = (await metrics.text()).body;
  assert.deepEqual(series(text, "klym_grynya_connects_total"), [
    'klym_grynya_connects_total{outcome="ok"} 1',
  ]);
  assert.deepEqual(series(text, "klym_grynya_reconnects_total"), [
    'klym_grynya_reconnects_total{outcome="failed"} 1',
  ]);
  assert.deepEqual(series(text, "klym_grynya_call_failures_total").sort(), [
    'klym_grynya_call_failures_total{op="call_tool",code="grynya_timeout"} 1',
    'klym_grynya_call_failures_total{op="other",code="other"} 1',
  ]);
});

Deno.test("queued and running follow a task from admission to its end", async () => {
  const metrics = new KlymMetrics({ maxLabelValues: 10, version: "test", sources });
  const t = task("alice");
  const figure = async (name: string) =>
    series((await metrics.text()).body, name).map((l) => l.split(" ")[1]);
  metrics.admitted(t);
  assert.deepEqual(await figure("klym_tasks_queued"), ["1"]);
  metrics.launched(t);
  assert.deepEqual(await figure("klym_tasks_queued"), ["0"]);
  assert.deepEqual(await figure("klym_tasks_running"), ["1"]);
  (t as { state: unknown }).state = {
    status: "cancelled",
    finishedAt: Date.now(),
    error: { code: "cancelled", message: "x" },
  };
  metrics.settled(t, "running");
  assert.deepEqual(await figure("klym_tasks_running"), ["0"]);
  assert.deepEqual(await figure("klym_task_cancels_total"), ["1"]);
  assert.deepEqual(await figure("klym_task_stop_seconds_count"), []);
  metrics.exited(t, { code: 0, signal: null, stderrTail: "" });
  assert.deepEqual(await figure("klym_task_stop_seconds_count"), ["1"]);
});

Deno.test("a task whose launch fails before it runs leaves no count behind", async () => {
  const metrics = new KlymMetrics({ maxLabelValues: 10, version: "test", sources });
  const t = task("alice");
  metrics.admitted(t);
  // The registry marks it running, then its kind no longer loads: it ends without `launched`.
  (t as { state: unknown }).state = {
    status: "failed",
    finishedAt: Date.now(),
    error: { code: "KIND_IMPORT_REFUSED", message: "x" },
  };
  metrics.settled(t, "running");
  const text = (await metrics.text()).body;
  assert.deepEqual(series(text, "klym_tasks_queued"), ['klym_tasks_queued{principal="alice"} 0']);
  assert.deepEqual(series(text, "klym_tasks_running"), []);
});

Deno.test("klym_node_info names a shared store's node once, and has no series on one machine", async () => {
  const shared = new KlymMetrics({ maxLabelValues: 10, version: "test", sources, node: "node-2" });
  const text = (await shared.text()).body;
  assert.deepEqual(series(text, "klym_node_info"), ['klym_node_info{node="node-2"} 1']);
  // An info metric, not a label on every series: the other families carry no node.
  assert.deepEqual(text.split("\n").filter((l) => l.includes("node-2")), [
    'klym_node_info{node="node-2"} 1',
  ]);
  const single = new KlymMetrics({ maxLabelValues: 10, version: "test", sources });
  const alone = (await single.text()).body;
  assert.deepEqual(series(alone, "klym_node_info"), []);
  assert.match(alone, /^# TYPE klym_node_info gauge$/m, "the family is still declared");
});
