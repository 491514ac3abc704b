// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * The journal's cost: the real server with the journal on (a state file) against
 * `KLYM_STATE=memory`, the journal's own write rate for a 20 MB log flood, and how soon a restarted
 * Klym serves with 1,000 retained tasks and 100,000 log lines in its file.
 * Run: deno task bench:journal. Prints one line per figure; nothing here passes or fails.
 */
import type { Client } from "@modelcontextprotocol/client";
import { call, MAIN, servingUrl, startKlym } from "../tests/helpers/klym_process.ts";
import { readLines } from "../src/lines.ts";
import { SqliteJournal } from "../src/journal/sqlite_journal.ts";
import type { JournalTask } from "../src/journal/journal.ts";
import { percentile } from "./stats.ts";

const SAMPLES = 400;

function report(name: string, samples: number[]): void {
  const f = (n: number) => n.toFixed(2);
  console.log(
    `${name.padEnd(48)} p50 ${f(percentile(samples, 0.5))} ms  p99 ${
      f(percentile(samples, 0.99))
    } ms  max ${f(Math.max(...samples))} ms  (n=${samples.length})`,
  );
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function tempDir(): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "klym-journal-bench-" });
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

/** `start` and `check_task_status` latencies, with 1,000 finished tasks already known. */
async function toolLatency(state: string): Promise<{ start: number[]; check: number[] }> {
  await using klym = await startKlym({
    KLYM_STATE: state,
    KLYM_MAX_CONCURRENT: "1",
    KLYM_WARM_SPARES: "0",
    KLYM_MAX_QUEUED: "100000",
  });
  const client: Client = await klym.connect();
  // One task holds the only slot: the measured starts are admission (and its journal write).
  const blocker = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind: "cooperative",
  });
  const ids: string[] = [];
  const start: number[] = [];
  for (let i = 0; i < SAMPLES + 50; i++) {
    const t = await timed(async () => {
      const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
        kind: "hello",
        prompt: `task ${i}`,
      });
      ids.push(task_id);
    });
    if (i >= 50) start.push(t); // the first ones warm up the JIT
  }
  const check: number[] = [];
  for (let i = 0; i < SAMPLES + 50; i++) {
    const t = await timed(() =>
      call(client, "check_task_status", { task_id: ids[i % ids.length]!, log_cursor: 0 })
    );
    if (i >= 50) check.push(t);
  }
  for (const id of [blocker.task_id, ...ids]) {
    await call(client, "cancel_task", { task_id: id });
  }
  return { start, check };
}

function task(id: string, at: number): JournalTask {
  return {
    id,
    owner: "local",
    kind: "print_lines",
    model: undefined,
    prompt: "a prompt",
    params: { lines: 100 },
    timeoutS: 600,
    createdAt: at,
    state: { status: "running", queuedAt: at, startedAt: at },
    progress: { done: 1, total: 2 },
    codeStartedAt: at,
  };
}

/** The journal's own write rate: 20 MB of 100-byte lines through `logged` and its batches. */
async function floodRate(): Promise<void> {
  await using tmp = await tempDir();
  const journal = new SqliteJournal(`${tmp.dir}/klym.db`);
  const now = Date.now();
  journal.admitted(task("t_flood", now));
  const text = "x".repeat(92);
  const lines = 200_000;
  const t0 = performance.now();
  for (let seq = 1; seq <= lines;) {
    // As the registry hands them over: one host batch of a few hundred lines at a time.
    const batch = [];
    for (let i = 0; i < 400 && seq <= lines; i++, seq++) {
      batch.push({ seq, stream: "stdout" as const, time: now, text: `${seq}`.padStart(8) + text });
    }
    journal.logged("t_flood", batch, 1, 0);
  }
  journal.flush();
  const ms = performance.now() - t0;
  journal.close();
  console.log(
    `20 MB log flood (200,000 lines of 100 B) journaled in ${ms.toFixed(0)} ms: ${
      (20 / (ms / 1000)).toFixed(0)
    } MB/s`,
  );
}

/** Spawns Klym and times it until it serves (the "Serving MCP at" line). */
async function timeToServe(env: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", MAIN, "--port", "0"],
    env: { KLYM_LOG_FORMAT: "json", KLYM_WARM_SPARES: "0", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let ms = NaN;
  const lines: string[] = [];
  for await (const { line } of readLines(child.stderr, 1 << 20)) {
    lines.push(line);
    if (servingUrl(line)) {
      ms = performance.now() - t0;
      child.kill("SIGTERM");
    }
  }
  await child.status;
  if (Number.isNaN(ms)) throw new Error(`Klym did not serve:\n${lines.join("\n")}`);
  return ms;
}

/** A restart with 1,000 retained tasks and 100,000 log lines, against an empty memory start. */
async function restart(): Promise<void> {
  await using tmp = await tempDir();
  const file = `${tmp.dir}/klym.db`;
  const journal = new SqliteJournal(file);
  const now = Date.now();
  for (let t = 0; t < 1000; t++) {
    const id = `t_bench${String(t).padStart(5, "0")}`;
    journal.admitted(task(id, now + t));
    journal.logged(
      id,
      Array.from({ length: 100 }, (_, i) => ({
        seq: i + 1,
        stream: "stdout" as const,
        time: now + t,
        text: `line ${i} of task ${t} ${"x".repeat(60)}`,
      })),
      1,
      0,
    );
    // Half finished, half left running: those come back interrupted.
    if (t % 2 === 0) {
      journal.changed({
        ...task(id, now + t),
        state: { status: "succeeded", startedAt: now, finishedAt: now + t, resultJson: '{"ok":1}' },
      });
    }
  }
  journal.close();
  const size = Deno.statSync(file).size;
  const env = { KLYM_RETENTION_S: "86400", KLYM_MAX_FINISHED: "100000" };
  const memory: number[] = [];
  const journaled: number[] = [];
  for (let i = 0; i < 5; i++) {
    memory.push(await timeToServe({ ...env, KLYM_STATE: "memory" }));
    journaled.push(await timeToServe({ ...env, KLYM_STATE: file }));
  }
  // The first restart interrupts 500 tasks; later ones only read them back.
  console.log(
    `restart to serving, 1,000 tasks and 100,000 lines (${
      (size / 1024 ** 2).toFixed(1)
    } MB file): ` +
      `first ${journaled[0]!.toFixed(0)} ms, median ${
        percentile(journaled, 0.5).toFixed(0)
      } ms; memory mode, empty: median ${percentile(memory, 0.5).toFixed(0)} ms (n=5 each)`,
  );
}

console.log(`Deno ${Deno.version.deno}, ${Deno.build.target}`);
await using tmp = await tempDir();
const memory = await toolLatency("memory");
const journaled = await toolLatency(`${tmp.dir}/klym.db`);
report("start_async_agent_task, KLYM_STATE=memory", memory.start);
report("start_async_agent_task, journal on", journaled.start);
report("check_task_status, KLYM_STATE=memory", memory.check);
report("check_task_status, journal on", journaled.check);
await floodRate();
await restart();
