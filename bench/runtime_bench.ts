// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * Figures for the task runtime, measured against the real server over Streamable HTTP.
 * Run: deno task bench. Prints one line per figure; nothing here passes or fails.
 */
import type { Client } from "@modelcontextprotocol/client";
import { call, childPids, startKlym, type Status } from "../tests/helpers/klym_process.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

function report(name: string, samples: number[], unit = "ms"): void {
  const f = (n: number) => n.toFixed(2);
  console.log(
    `${name.padEnd(52)} p50 ${f(percentile(samples, 0.5))} ${unit}  p99 ${
      f(percentile(samples, 0.99))
    } ${unit}  max ${f(Math.max(...samples))} ${unit}  (n=${samples.length})`,
  );
}

function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+) kB/)![1]) / 1024;
}

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

async function startLatency(): Promise<void> {
  // One task holds the only slot so the measured starts are admission alone.
  await using klym = await startKlym({ KLYM_MAX_CONCURRENT: "1", KLYM_WARM_SPARES: "0" });
  const client = await klym.connect();
  await start(client, "cooperative");
  for (let i = 0; i < 50; i++) await start(client, "hello"); // warm-up
  await cancelAll(client);
  await start(client, "cooperative");
  const quiet: number[] = [];
  for (let i = 0; i < 500; i++) quiet.push((await timed(() => start(client, "hello")))[0]);
  report("start_async_agent_task, quiet", quiet);
  await cancelAll(client);
}

async function startLatencyUnderSpin(): Promise<void> {
  await using klym = await startKlym({ KLYM_MAX_CONCURRENT: "8", KLYM_WARM_SPARES: "0" });
  const client = await klym.connect();
  const spinners = [];
  for (let i = 0; i < 8; i++) spinners.push(await start(client, "spin"));
  for (const id of spinners) await waitForLog(client, id);
  for (let i = 0; i < 50; i++) await start(client, "hello");
  const busy: number[] = [];
  for (let i = 0; i < 500; i++) busy.push((await timed(() => start(client, "hello")))[0]);
  report("start_async_agent_task, 8 tasks spinning", busy);
  await cancelAll(client);
}

async function firstLine(spares: number): Promise<void> {
  await using klym = await startKlym({ KLYM_WARM_SPARES: String(spares) });
  const client = await klym.connect();
  const samples: number[] = [];
  for (let i = 0; i < 21; i++) {
    await sleep(spares ? 400 : 50); // let the spare be replaced
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
  for (let i = 0; i < 10; i++) {
    const id = await start(client, "spin");
    await waitForLog(client, id);
    const t0 = performance.now();
    await call(client, "cancel_task", { task_id: id });
    while (childPids(klym.pid).length > 0) await sleep(2);
    samples.push(performance.now() - t0);
  }
  report("cancel of a CPU loop → its process gone", samples);
}

async function checkWithThousandTasks(): Promise<void> {
  await using klym = await startKlym({ KLYM_MAX_CONCURRENT: "1", KLYM_WARM_SPARES: "0" });
  const client = await klym.connect();
  const ids = [await start(client, "cooperative")];
  for (let i = 0; i < 999; i++) ids.push(await start(client, "hello"));
  const samples: number[] = [];
  for (let i = 0; i < 500; i++) {
    const id = ids[(i * 7919) % ids.length]!;
    samples.push((await timed(() => call(client, "check_task_status", { task_id: id })))[0]);
  }
  report("check_task_status with 1,000 tasks registered", samples);
  await cancelAll(client);
}

async function memory(): Promise<void> {
  await using klym = await startKlym({ KLYM_WARM_SPARES: "0" });
  const client = await klym.connect();
  const idle = rssMb(klym.pid);
  const id = await start(client, "print_lines", { lines: 200_000, width: 100 });
  while (
    (await call<Status>(client, "check_task_status", { task_id: id, max_log_lines: 0 })).status ===
      "running"
  ) await sleep(50);
  console.log(
    `server RSS idle ${idle.toFixed(1)} MB; after a task printed 20 MB: ${
      rssMb(klym.pid).toFixed(1)
    } MB (log buffer capped at KLYM_LOG_LIMIT_BYTES)`,
  );
  const sleepers = [];
  for (let i = 0; i < 8; i++) sleepers.push(await start(client, "sleep", { ms: 60_000 }));
  for (const s of sleepers) await waitForLog(client, s);
  const children = childPids(klym.pid);
  const perTask = children.reduce((sum, pid) => sum + rssMb(pid), 0) / children.length;
  console.log(
    `memory per running task (RSS of its process, ${children.length} tasks): ${
      perTask.toFixed(1)
    } MB`,
  );
  await cancelAll(client);
}

console.log(
  `Klym runtime benchmark — ${Deno.build.target}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`,
);
await startLatency();
await startLatencyUnderSpin();
await firstLine(1);
await firstLine(0);
await cancelSpin();
await checkWithThousandTasks();
await memory();
