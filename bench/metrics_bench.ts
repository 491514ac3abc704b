// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * What a scrape costs: `GET /metrics` on the real server once it holds 1,000 retained tasks of 10
 * principals (from its state file, as after a restart; each principal then runs two tasks), and the text format alone with every label at its bound (50 principals, kinds and
 * models: the most series a hostile client can make with the default KLYM_METRICS_MAX_LABEL_VALUES).
 * Run: deno task bench:metrics. Prints one line per figure; nothing here passes or fails.
 */
import { connectAs } from "../tests/helpers/ui_client.ts";
import { SqliteJournal } from "../src/journal/sqlite_journal.ts";
import type { JournalTask } from "../src/journal/journal.ts";
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

/** A state file holding `TASKS` finished tasks of the principals, as a restarted Klym finds it. */
function retainedJournal(file: string, principals: string[]): void {
  const journal = new SqliteJournal(file);
  const now = Date.now() - 60_000;
  for (let t = 0; t < TASKS; t++) {
    const at = now + t;
    const task: JournalTask = {
      id: `t_bench${String(t).padStart(5, "0")}`,
      owner: principals[t % principals.length]!,
      kind: "hello",
      model: undefined,
      prompt: "a prompt",
      params: {},
      timeoutS: 600,
      createdAt: at,
      state: { status: "queued", queuedAt: at },
      progress: undefined,
      codeStartedAt: undefined,
    };
    journal.admitted(task);
    journal.changed({
      ...task,
      state: { status: "succeeded", startedAt: at, finishedAt: at + 1, resultJson: '{"ok":1}' },
    });
  }
  journal.close();
}

async function serverScrape(): Promise<void> {
  const tokens = Array.from(
    { length: PRINCIPALS },
    (_, i) => [`p${i}`, `token-${i}-0123456789abcdef`] as const,
  );
  const dir = Deno.makeTempDirSync({ prefix: "klym-metrics-bench-" });
  Deno.chmodSync(dir, 0o700);
  retainedJournal(`${dir}/klym.db`, tokens.map(([name]) => name));
  try {
    await using klym = await startKlym({
      KLYM_STATE: `${dir}/klym.db`,
      KLYM_AUTH_TOKENS: tokens.map(([n, t]) => `${n}:${t}`).join(","),
      KLYM_ADMINS: "p0",
      KLYM_MAX_FINISHED: String(TASKS + 100),
    });
    // Each principal runs two tasks of its own, so that the labelled series exist.
    for (const [, token] of tokens) {
      await using client = await connectAs(klym.url, token);
      for (const kind of ["hello", "fail"]) {
        const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
          kind,
        });
        await waitFinal(client, task_id, 600_000);
      }
    }
    const headers = { authorization: `Bearer ${tokens[0]![1]}` };
    for (const route of ["/metrics", "/healthz"]) {
      const samples: number[] = [];
      let bytes = 0;
      for (let i = 0; i < SAMPLES + 50; i++) {
        const t0 = performance.now();
        const response = await fetch(`${klym.url}${route}`, { headers });
        bytes = (await response.text()).length;
        if (i >= 50) samples.push(performance.now() - t0);
      }
      const what = route === "/metrics"
        ? `GET /metrics, ${TASKS} retained tasks of ${PRINCIPALS} principals`
        : "GET /healthz on the same server (the base)";
      report(what, samples, bytes);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
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
