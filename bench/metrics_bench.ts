// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * What a scrape costs: `GET /metrics` on the real server once it holds 1,000 retained tasks of 10
 * principals, and the text format alone with every label at its bound (50 principals, kinds and
 * models: the most series a hostile client can make with the default KLYM_METRICS_MAX_LABEL_VALUES).
 * Run: deno task bench:metrics. Prints one line per figure; nothing here passes or fails.
 */
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { call, startKlym, waitFinal } from "../tests/helpers/klym_process.ts";
import { KlymMetrics } from "../src/metrics/klym_metrics.ts";
import { IDLE_SOURCES } from "../tests/helpers/metric_sources.ts";
import type { TaskRecord } from "../src/tasks/task_store.ts";
import { percentile } from "./stats.ts";

const TASKS = 1000;
const PRINCIPALS = 10;
const SAMPLES = 400;

function report(name: string, samples: number[], bytes: number): void {
  const f = (n: number) => n.toFixed(2);
  console.log(
    `${name.padEnd(56)} p50 ${f(percentile(samples, 0.5))} ms  p99 ${
      f(percentile(samples, 0.99))
    } ms  max ${f(Math.max(...samples))} ms  (n=${samples.length}, ${bytes} B)`,
  );
}

async function serverScrape(): Promise<void> {
  const tokens = Array.from(
    { length: PRINCIPALS },
    (_, i) => [`p${i}`, `token-${i}-0123456789abcdef`],
  );
  await using klym = await startKlym({
    KLYM_AUTH_TOKENS: tokens.map(([n, t]) => `${n}:${t}`).join(","),
    KLYM_ADMINS: "p0",
    KLYM_MAX_QUEUED: "10000",
    KLYM_MAX_FINISHED: String(TASKS),
  });
  const clients: Client[] = [];
  for (const [, token] of tokens) {
    const client = new Client({ name: "bench", version: "1" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${klym.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    );
    clients.push(client);
  }
  const ids: [Client, string][] = [];
  for (let i = 0; i < TASKS; i++) {
    const client = clients[i % PRINCIPALS]!;
    const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: i % 3 === 0 ? "fail" : "hello",
    });
    ids.push([client, task_id]);
  }
  for (const [client, id] of ids) await waitFinal(client, id, 600_000);
  const headers = { authorization: `Bearer ${tokens[0]![1]}` };
  const samples: number[] = [];
  let bytes = 0;
  for (let i = 0; i < SAMPLES + 50; i++) {
    const t0 = performance.now();
    const response = await fetch(`${klym.url}/metrics`, { headers });
    bytes = (await response.text()).length;
    if (i >= 50) samples.push(performance.now() - t0);
  }
  report(`GET /metrics, ${TASKS} retained tasks of ${PRINCIPALS} principals`, samples, bytes);
  // The base, measured at the same time on the same server: the smallest route behind the guard.
  const base: number[] = [];
  for (let i = 0; i < SAMPLES + 50; i++) {
    const t0 = performance.now();
    const response = await fetch(`${klym.url}/healthz`, { headers });
    bytes = (await response.text()).length;
    if (i >= 50) base.push(performance.now() - t0);
  }
  report("GET /healthz (the base, same server)", base, bytes);
  await Promise.all(clients.map((c) => c.close()));
}

async function textAtBound(): Promise<void> {
  const metrics = new KlymMetrics({
    maxLabelValues: 50,
    version: "bench",
    sources: IDLE_SOURCES,
  });
  for (let i = 0; i < 5000; i++) {
    const now = Date.now();
    const task = {
      id: `t${i}`,
      owner: `p${i % 60}`,
      kind: `k${(i * 7) % 60}`,
      createdAt: now - 1000,
      codeStartedAt: now - 500,
      state: { status: "queued", queuedAt: now },
    } as unknown as TaskRecord;
    metrics.admitted(task);
    metrics.launched(task);
    metrics.codeStarted(task);
    metrics.logged(task, 3, 120, 0);
    metrics.modelCall(task, {
      model: `m${i % 60}`,
      outcome: i % 10 === 0 ? "refused" : "ok",
      code: "token_budget",
      inputTokens: 100,
      outputTokens: 10,
      startedAt: now - 100,
      endedAt: now,
    });
    (task as { state: unknown }).state = { status: "succeeded", finishedAt: now, resultJson: "1" };
    metrics.settled(task, "running");
  }
  const samples: number[] = [];
  let bytes = 0;
  for (let i = 0; i < SAMPLES + 50; i++) {
    const t0 = performance.now();
    bytes = (await metrics.text()).body.length;
    if (i >= 50) samples.push(performance.now() - t0);
  }
  report("text format, every label at its bound of 50", samples, bytes);
}

await textAtBound();
await serverScrape();
