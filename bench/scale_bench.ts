// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * Many I/O-bound tasks at once: N tasks (default 500, SCALE_TASKS) each connect to grynya (the
 * FastMCP stand-in), wait 20 s as for a slow reply, and read from it again. Figures: whether all
 * complete, `list_tasks` latency meanwhile (sampled every 50 ms), the server's peak RSS, and a task
 * process's PSS at steady state. Run: deno task bench:scale
 */
import { call, childPids, startKlym, type Status } from "../tests/helpers/klym_process.ts";
import { startFastMcpPeer } from "../tests/peers/peers.ts";
import { percentile } from "./stats.ts";

const TASKS = Number(Deno.env.get("SCALE_TASKS") ?? 500);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function memoryOf(pid: number): { rss: number; pss: number } {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
    const kb = (key: string) => Number(text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))![1]);
    return { rss: kb("Rss") / 1024, pss: kb("Pss") / 1024 };
  } catch {
    return { rss: 0, pss: 0 };
  }
}

await using grynya = await startFastMcpPeer();
await using klym = await startKlym({
  KLYM_GRYNYA_URL: grynya.url,
  KLYM_MAX_CONCURRENT: String(TASKS),
  KLYM_DEFAULT_TIMEOUT_S: "600",
});
const client = await klym.connect();
const started = performance.now();
const ids: string[] = [];
for (let i = 0; i < TASKS; i++) {
  ids.push(
    (await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "grynya_wait",
      params: { ms: 20_000 },
    })).task_id,
  );
}
const latencies: number[] = [];
let peakRss = 0;
let steadyPss: number | undefined;
let steadyRss: number | undefined;
let counts: Record<string, number> = {};
let allRunningAt: number | undefined;
while (true) {
  const t0 = performance.now();
  counts = (await call<{ counts: Record<string, number> }>(client, "list_tasks", { limit: 50 }))
    .counts;
  latencies.push(performance.now() - t0);
  peakRss = Math.max(peakRss, memoryOf(klym.pid).rss);
  if (allRunningAt === undefined && counts.running === TASKS) allRunningAt = performance.now();
  // Steady state: every task has connected and waits (they wait 20 s after connecting).
  if (
    steadyPss === undefined && allRunningAt !== undefined &&
    performance.now() - allRunningAt > 12_000 && counts.running === TASKS
  ) {
    const sample = childPids(klym.pid).slice(0, 20).map(memoryOf);
    steadyPss = sample.reduce((s, m) => s + m.pss, 0) / sample.length;
    steadyRss = sample.reduce((s, m) => s + m.rss, 0) / sample.length;
  }
  if ((counts.queued ?? 0) + (counts.running ?? 0) === 0) break;
  await sleep(50);
}
const failed = [];
for (const id of ids) {
  const status = await call<Status>(client, "check_task_status", { task_id: id, max_log_lines: 0 });
  if (status.status !== "succeeded") failed.push(`${status.status} ${status.error?.code}`);
}
latencies.sort((a, b) => a - b);
console.log(
  `${TASKS} tasks waiting on grynya: ${TASKS - failed.length} succeeded, ${failed.length} not` +
    `${failed.length ? ` (${[...new Set(failed)].join(", ")})` : ""}, in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`,
);
console.log(
  `list_tasks meanwhile: p50 ${percentile(latencies, 0.5).toFixed(2)} ms, p99 ${
    percentile(latencies, 0.99).toFixed(2)
  } ms, max ${latencies.at(-1)!.toFixed(2)} ms (n=${latencies.length})`,
);
console.log(`server peak RSS ${peakRss.toFixed(1)} MB`);
console.log(
  steadyPss === undefined
    ? `never all ${TASKS} running at once`
    : `a task process with all ${TASKS} running (mean of 20): PSS ${steadyPss.toFixed(1)} MB, RSS ${
      steadyRss!.toFixed(1)
    } MB`,
);
