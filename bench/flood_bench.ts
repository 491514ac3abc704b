// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * Output floods: 8 tasks write as fast as they can in one shape (bare newlines, one endless line,
 * many short lines, invalid UTF-8) while a client times `list_tasks`. Shows that reading task
 * output is bounded work per event-loop turn, whatever its shape.
 * Run: deno task bench:flood. Prints one line per shape; nothing here passes or fails.
 */
import { call, REPO, startKlym, type Status } from "../tests/helpers/klym_process.ts";
import { percentile } from "./stats.ts";

const TASKS = 8;
const SAMPLES = 300;
const SHAPES = ["newlines", "long_line", "short_lines", "invalid_utf8"] as const;

await using klym = await startKlym({
  KLYM_TASKS_DIR: `${REPO}tests/fixtures/hostile/`,
  KLYM_MAX_CONCURRENT: String(TASKS),
  KLYM_WARM_SPARES: "0",
});
const client = await klym.connect();

/** Times SAMPLES calls of `list_tasks` in a row and prints one line. */
async function timeListTasks(label: string, note = ""): Promise<void> {
  const times: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const t0 = performance.now();
    await call(client, "list_tasks", {});
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  console.log(
    `${label.padEnd(14)} list_tasks p50 ${percentile(times, 0.5).toFixed(2)} ms  p99 ${
      percentile(times, 0.99).toFixed(2)
    } ms  max ${times.at(-1)!.toFixed(2)} ms  (n=${SAMPLES}${note})`,
  );
}

await timeListTasks("no flood");

for (const shape of SHAPES) {
  const ids: string[] = [];
  for (let i = 0; i < TASKS; i++) {
    const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "flood",
      params: { shape, ms: 120_000 },
    });
    ids.push(task_id);
  }
  for (const id of ids) {
    while ((await call<Status>(client, "check_task_status", { task_id: id })).logs.length === 0) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  await timeListTasks(shape, `, ${TASKS} tasks flooding`);
  for (const id of ids) await call(client, "cancel_task", { task_id: id });
}
