/**
 * A real Prometheus scrapes a real Klym while a known workload runs: tasks that succeed, fail,
 * time out and are cancelled, a model call through the scripted model, and a grynya that restarts
 * under a task. The figures are read back through Prometheus's own query API.
 */
import assert from "node:assert/strict";
import { call, REPO, startKlym, waitFinal, waitLogged } from "../helpers/klym_process.ts";
import { startScriptedModel } from "../helpers/scripted_openai.ts";
import { startPrometheus } from "../helpers/prometheus.ts";
import { freePort, startMemoryPeer } from "../peers/peers.ts";
import { connectAs } from "../helpers/ui_client.ts";

const OPS = "ops-token-0123456789";
const ALICE = "alice-token-0123456789";

Deno.test("Prometheus scrapes /metrics and sees the workload's tasks, model calls and grynya's restart", async () => {
  await using model = startScriptedModel(() => ({ text: "forty-two" }));
  const dir = Deno.makeTempDirSync({ prefix: "klym-metrics-" });
  const port = freePort();
  const memoryFile = `${dir}/memory.jsonl`;
  let peer = await startMemoryPeer({ transport: "sse", memoryFile, port });
  try {
    await using klym = await startKlym({
      KLYM_AUTH_TOKENS: `ops:${OPS},alice:${ALICE}`,
      KLYM_ADMINS: "ops",
      KLYM_MODEL: "openai-compatible:scripted",
      KLYM_OPENAI_COMPATIBLE_URL: model.baseUrl,
      KLYM_GRYNYA_URL: peer.url,
      KLYM_GRYNYA_RECONNECTS: "20",
      KLYM_CANCEL_GRACE_MS: "200",
    });
    const url = new URL(klym.url);
    await using prometheus = await startPrometheus(url, { token: OPS });
    // Prometheus reaches Klym with the operator's token.
    await prometheus.until('up{job="klym"}', (r) => r[0]?.value === 1, 30_000);

    // The workload is alice's.
    await using client = await connectAs(klym.url, ALICE);
    const start = (kind: string, extra: Record<string, unknown> = {}) =>
      call<{ task_id: string }>(client, "start_async_agent_task", { kind, ...extra });

    const ok = await start("hello");
    const failed = await start("fail");
    const timedOut = await start("sleep", { params: { ms: 60_000 }, timeout_s: 1 });
    const cancelled = await start("cooperative");
    const llm = await start("llm_once", { prompt: "the answer?" });
    const grynya = await start("grynya_calls", {
      params: { times: 6, pause_ms: 200, resend_interrupted: true },
    });
    await waitLogged(client, cancelled.task_id, /waiting for abort/, 120_000);
    await call(client, "cancel_task", { task_id: cancelled.task_id });
    // grynya restarts once the task is connected and working.
    await waitLogged(client, grynya.task_id, /call 0: ok/, 120_000);
    await peer.stop();
    peer = await startMemoryPeer({ transport: "sse", memoryFile, port });
    const finals = new Map<string, string>();
    for (const { task_id } of [ok, failed, timedOut, cancelled, llm, grynya]) {
      finals.set(task_id, (await waitFinal(client, task_id, 120_000)).status);
    }
    assert.deepEqual(
      [ok, failed, timedOut, cancelled, llm, grynya].map((t) => finals.get(t.task_id)),
      ["succeeded", "failed", "timed_out", "cancelled", "succeeded", "succeeded"],
    );

    const byStatus = (r: { metric: Record<string, string>; value: number }[]) =>
      Object.fromEntries(r.map((s) => [s.metric.status, s.value]));
    const finished = await prometheus.until(
      'sum by (status) (klym_tasks_finished_total{principal="alice"})',
      (r) => {
        const s = byStatus(r);
        return s.succeeded === 3 && s.failed === 1 && s.timed_out === 1 && s.cancelled === 1;
      },
    );
    assert.deepEqual(byStatus(finished), {
      succeeded: 3,
      failed: 1,
      timed_out: 1,
      cancelled: 1,
    });
    // Each query must come to hold within the helper's deadline (which fails naming the last result).
    const holds = async (expr: string, ok: (value: number) => boolean) =>
      (await prometheus.until(expr, (r) => r.length === 1 && ok(r[0]!.value)))[0]!.value;
    await holds('sum(klym_tasks_started_total{principal="alice"})', (v) => v === 6);
    await holds('sum(klym_task_cancels_total{reason="cancelled"})', (v) => v === 1);
    await holds('sum(klym_task_cancels_total{reason="timed_out"})', (v) => v === 1);
    // Both stops were timed, from the cancel or deadline to the process being gone.
    await holds("sum(klym_task_stop_seconds_count)", (v) => v === 2);
    const scripted = 'principal="alice",model="openai-compatible:scripted"';
    await holds(`klym_model_calls_total{${scripted},outcome="ok"}`, (v) => v === 1);
    await holds(`klym_model_output_tokens_total{${scripted}}`, (v) => v === 10);
    await holds(`klym_model_input_tokens_total{${scripted}}`, (v) => v > 0);
    // grynya went away under the task and came back: a reconnect, and every call counted.
    await holds('klym_grynya_reconnects_total{outcome="ok"}', (v) => v >= 1);
    await holds('klym_grynya_calls_total{op="call_tool"}', (v) => v >= 6);
    // Nothing is left queued or running once the workload is over.
    await holds("sum(klym_tasks_queued) + sum(klym_tasks_running)", (v) => v === 0);
    await holds("sum(klym_task_start_to_first_line_seconds_count)", (v) => v >= 4);

    // Every query of the Grafana dashboard is one Prometheus accepts, with Grafana's variables.
    const dashboard = JSON.parse(Deno.readTextFileSync(`${REPO}docs/grafana_dashboard.json`));
    for (const panel of dashboard.panels as { targets: { expr: string }[] }[]) {
      for (const { expr } of panel.targets) {
        await prometheus.query(
          expr.replaceAll("$__rate_interval", "1m").replaceAll("$__range", "1h"),
        );
      }
    }

    // /metrics is the operators': no token, 401; a principal's that is not an admin, 403.
    const none = await fetch(`${klym.url}/metrics`);
    assert.equal(none.status, 401);
    await none.body?.cancel();
    const alice = await fetch(`${klym.url}/metrics`, {
      headers: { authorization: `Bearer ${ALICE}` },
    });
    assert.equal(alice.status, 403);
    assert.match((await alice.json()).error, /not an operator.*KLYM_ADMINS/);
  } finally {
    await peer.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});
