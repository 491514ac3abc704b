// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * Where the memory of a task waiting on a timer goes, isolate by isolate: task processes are
 * spawned as the server spawns them (`sandboxedCommand`, `TaskProcess`) and measured at each step
 * of their start, beside a bare Deno process with the same V8 flags. Each step runs `copies`
 * processes at once (PSS shares the runtime's pages among them, as among a server's tasks) and
 * reports their mean PSS and private (USS) memory, in MB. Linux only (it reads /proc).
 */
import { processOptions, TaskProcess } from "../../src/tasks/task_process.ts";
import { sandboxedCommand } from "../../src/tasks/sandbox_policy.ts";
import type { TaskSpec } from "../../src/protocol.ts";
import { ConfigSchema } from "../../src/config.ts";

const KINDS = new URL("../kinds/", import.meta.url).pathname;

export interface SplitRow {
  readonly part: string;
  /** Mean PSS and USS per process added by this part, MB. */
  readonly pss: number;
  readonly uss: number;
}

interface Sample {
  pss: number;
  uss: number;
}

function sample(pid: number): Sample {
  const text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  return {
    pss: kb("Pss") / 1024,
    uss: (kb("Private_Clean") + kb("Private_Dirty")) / 1024,
  };
}

const mean = (pids: readonly number[]): Sample => {
  const all = pids.map(sample);
  const sum = (key: keyof Sample) => all.reduce((s, x) => s + x[key], 0) / all.length;
  return { pss: sum("pss"), uss: sum("uss") };
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The processes' mean once it holds still (within 0.2 MB over `ms`), at most 30 s on. */
async function settled(pids: readonly number[], ms: number): Promise<Sample> {
  const deadline = Date.now() + 30_000;
  let last = mean(pids);
  while (true) {
    await sleep(ms);
    const now = mean(pids);
    if (Math.abs(now.pss - last.pss) < 0.2 || Date.now() > deadline) return now;
    last = now;
  }
}

/** The split for `copies` processes at once, each step measured once its memory holds still over `settleMs`. */
export async function isolateSplit(copies = 4, settleMs = 1500): Promise<SplitRow[]> {
  const options = processOptions(
    { ...ConfigSchema.parse({}), grynyaUrl: "http://127.0.0.1:9/mcp" },
    KINDS,
  );
  const host = sandboxedCommand(options);
  const v8 = host.args.find((a) => a.startsWith("--v8-flags=")) ?? "--v8-flags=";
  const dir = await Deno.makeTempDir({ prefix: "klym-split-" });
  const bare = `${dir}/bare.js`;
  const withWorker = `${dir}/worker.js`;
  await Deno.writeTextFile(bare, "setInterval(() => {}, 1e9);\n");
  await Deno.writeTextFile(
    withWorker,
    `new Worker(URL.createObjectURL(new Blob(["setInterval(() => {}, 1e9);"], { type: "text/javascript" })), { type: "module" });\nsetInterval(() => {}, 1e9);\n`,
  );
  const spawnBare = (file: string) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--allow-read", v8, file],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  const rows: SplitRow[] = [];
  const step = async (part: string, pids: number[], base: Sample | undefined) => {
    const now = await settled(pids, settleMs);
    rows.push({ part, pss: now.pss - (base?.pss ?? 0), uss: now.uss - (base?.uss ?? 0) });
    return now;
  };
  const children: Deno.ChildProcess[] = [];
  const processes: TaskProcess[] = [];
  try {
    // A bare Deno process, then one with an empty Worker: the runtime, and one isolate more.
    const bares = Array.from({ length: copies }, () => spawnBare(bare));
    children.push(...bares);
    const runtime = await step(
      "the runtime and its first isolate (a bare Deno process)",
      bares.map((c) => c.pid),
      undefined,
    );
    const workers = Array.from({ length: copies }, () => spawnBare(withWorker));
    children.push(...workers);
    const twoIsolates = await step(
      "one isolate more (an empty Worker)",
      workers.map((c) => c.pid),
      runtime,
    );
    for (const c of [...bares, ...workers]) c.kill("SIGKILL");
    // Hosts as the server starts them, before their task: the main isolate with its modules, the
    // spare Worker (and the watchdog's Worker where the host runs one); then with a task waiting.
    for (let i = 0; i < copies; i++) processes.push(new TaskProcess(options));
    const pids = processes.map((p) => p.pid);
    const hosted = await step(
      "the host's main isolate: its modules and state (a host before its task, less a bare process with one Worker)",
      pids,
      { pss: runtime.pss + twoIsolates.pss, uss: runtime.uss + twoIsolates.uss },
    );
    processes.forEach((p, i) => p.start(waitSpec(i), () => {}));
    await step("the task: its module, its session, its Worker's runtime", pids, hosted);
    rows.push({ part: "a task process waiting on a timer, in all", ...mean(pids) });
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch {
        // Gone already.
      }
      await c.status;
    }
    for (const p of processes) await p[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true });
  }
  return rows;
}

function waitSpec(i: number): TaskSpec {
  return {
    taskId: `t_split${i}`,
    kind: "wait",
    params: { ms: 600_000 },
    budget: { calls: 1, tokens: 1 },
    modulePath: `${KINDS}wait.ts`,
    grynya: {
      url: "http://127.0.0.1:9/mcp",
      transport: "auto",
      headers: {},
      connectTimeoutMs: 1000,
      callTimeoutMs: 1000,
      reconnects: 0,
      reconnectMs: 1000,
      write: { kind: "auto" },
    },
  };
}

if (import.meta.main) {
  for (const row of await isolateSplit()) {
    console.log(`${row.part}: PSS ${row.pss.toFixed(1)} MB, private ${row.uss.toFixed(1)} MB`);
  }
}
