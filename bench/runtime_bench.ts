// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * Figures for the task runtime, measured against the real server over Streamable HTTP.
 * Run: deno task bench. Prints one line per figure; nothing here passes or fails.
 */
import type { Client } from "@modelcontextprotocol/client";
import { call, childPids, startKlym, type Status } from "../tests/helpers/klym_process.ts";
import { report } from "./stats.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resident and proportional set sizes in MB (Linux `smaps_rollup`). */
function memoryOf(pid: number): { rss: number; pss: number } {
  const text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
  const kb = (key: string) => Number(text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))![1]);
  return { rss: kb("Rss") / 1024, pss: kb("Pss") / 1024 };
}

/** Samples per latency figure: enough for a p99 that is not just the maximum. */
const SAMPLES = 250;

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const value = await fn();
  return [performance.now() - t0, value];
}

const start = (client: Client, kind: string, params: Record<string, unknown> = {}) =>
  call<{ task_id: string }>(client, "start_async_agent_task", { kind, params }).then((s) =>
    s.task_id
  );

async function cancelAll(client: Client): Promise<void> {
  const { tasks } = await call<{ tasks: { task_id: string }[] }>(client, "list_tasks", {
    limit: 1000,
  });
  for (const task of tasks) await call(client, "cancel_task", { task_id: task.task_id });
}

async function waitForLog(client: Client, taskId: string): Promise<Status> {
  while (true) {
    const status = await call<Status>(client, "check_task_status", { task_id: taskId });
    if (status.logs.length > 0) return status;
    await sleep(1);
  }
}

/** Starts that include the spawn path: every task runs, and its process is spawned meanwhile. */
async function startLatency(label: string, spinners: number): Promise<void> {
  await using klym = await startKlym({ KLYM_MAX_CONCURRENT: String(spinners + 4) });
  const client = await klym.connect();
  const spinning = [];
  for (let i = 0; i < spinners; i++) spinning.push(await start(client, "spin"));
  for (const id of spinning) await waitForLog(client, id);
  for (let i = 0; i < 20; i++) await start(client, "hello"); // warm-up
  await sleep(1000);
  const samples: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    samples.push((await timed(() => start(client, "hello")))[0]);
    await sleep(20); // a client's pace; the tasks' processes start meanwhile
  }
  report(`start_async_agent_task, ${label} (spawns included)`, samples);
  await cancelAll(client);
}

async function firstLine(spares: number): Promise<void> {
  await using klym = await startKlym({ KLYM_WARM_SPARES: String(spares) });
  const client = await klym.connect();
  const samples: number[] = [];
  for (let i = 0; i <= SAMPLES; i++) {
    await sleep(spares ? 300 : 20); // let the spare be replaced
    const t0 = Date.now();
    const id = await start(client, "hello");
    const status = await waitForLog(client, id);
    if (i > 0) samples.push(Date.parse(status.logs[0]!.time) - t0);
  }
  report(`start → first line of task code (${spares ? "warm spare" : "cold spawn"})`, samples);
}

async function cancelSpin(): Promise<void> {
  await using klym = await startKlym({ KLYM_WARM_SPARES: "0" });
  const client = await klym.connect();
  const samples: number[] = [];
  for (let i = 0; i < 20; i++) {
    const id = await start(client, "spin");
    await waitForLog(client, id);
    const t0 = performance.now();
    await call(client, "cancel_task", { task_id: id });
    while (childPids(klym.pid).length > 0) await sleep(2);
    samples.push(performance.now() - t0);
  }
  report("cancel of a CPU loop → its process gone", samples);
}

/** 1,000 retained tasks, each with 200 log lines; reads of a random one, with its logs. */
async function checkWithThousandTasks(): Promise<void> {
  await using klym = await startKlym({ KLYM_MAX_CONCURRENT: "8", KLYM_WARM_SPARES: "2" });
  const client = await klym.connect();
  const ids: string[] = [];
  for (let i = 0; i < 1000; i++) {
    ids.push(await start(client, "print_lines", { lines: 200, width: 60 }));
  }
  for (const id of ids) {
    while (
      (await call<Status>(client, "check_task_status", { task_id: id, max_log_lines: 0 }))
        .status !== "succeeded"
    ) await sleep(20);
  }
  const samples: number[] = [];
  for (let i = 0; i < SAMPLES * 2; i++) {
    const id = ids[(i * 7919) % ids.length]!;
    samples.push((await timed(() => call(client, "check_task_status", { task_id: id })))[0]);
  }
  report("check_task_status, 1,000 tasks of 200 log lines", samples);
}

async function memory(): Promise<void> {
  await using klym = await startKlym({ KLYM_WARM_SPARES: "0" });
  const client = await klym.connect();
  await sleep(2000);
  const idle = memoryOf(klym.pid);
  console.log(`server idle: RSS ${idle.rss.toFixed(1)} MB, PSS ${idle.pss.toFixed(1)} MB`);
  const id = await start(client, "print_lines", { lines: 200_000, width: 100 });
  while (
    (await call<Status>(client, "check_task_status", { task_id: id, max_log_lines: 0 })).status ===
      "running"
  ) await sleep(50);
  console.log(
    `server after a task printed 20 MB: RSS ${
      memoryOf(klym.pid).rss.toFixed(1)
    } MB (log buffer capped at KLYM_LOG_LIMIT_BYTES)`,
  );
  const sleepers = [];
  for (let i = 0; i < 8; i++) sleepers.push(await start(client, "sleep", { ms: 60_000 }));
  for (const s of sleepers) await waitForLog(client, s);
  await sleep(3000); // steady state
  const each = childPids(klym.pid).map(memoryOf);
  const mean = (f: (m: { rss: number; pss: number }) => number) =>
    each.reduce((sum, m) => sum + f(m), 0) / each.length;
  console.log(
    `a task waiting on a timer (${each.length} at once, steady state): PSS ${
      mean((m) => m.pss).toFixed(1)
    } MB, RSS ${mean((m) => m.rss).toFixed(1)} MB`,
  );
  await cancelAll(client);
}

console.log(
  `Klym runtime benchmark — ${Deno.build.target}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`,
);
await startLatency("quiet", 0);
await startLatency("8 tasks spinning", 8);
await firstLine(1);
await firstLine(0);
await cancelSpin();
await checkWithThousandTasks();
await memory();
