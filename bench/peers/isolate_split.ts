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
  /** Deno names each Worker's thread `worker-N`. */
  const workerThreads = (pid: number) =>
    [...Deno.readDirSync(`/proc/${pid}/task`)].filter((t) =>
      Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/comm`).startsWith("worker-")
    ).length;
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
      "one isolate more (a bare process with an empty Worker, less a bare process)",
      workers.map((c) => c.pid),
      runtime,
    );
    for (const c of [...bares, ...workers]) c.kill("SIGKILL");
    // Task processes as the server starts them, each with a task waiting on a timer, measured
    // once every task has written its first line and their memory holds still.
    const logged: Promise<void>[] = [];
    for (let i = 0; i < copies; i++) {
      const process = new TaskProcess(options);
      processes.push(process);
      const { promise, resolve } = Promise.withResolvers<void>();
      logged.push(promise);
      process.start(waitSpec(i), (event) => {
        if (event.type === "logs") resolve();
      });
    }
    await Promise.all(logged);
    const pids = processes.map((p) => p.pid);
    const total = await settled(pids, settleMs);
    const isolates = workerThreads(pids[0]!);
    rows.push({
      part: `its ${isolates} Worker isolate${isolates === 1 ? "" : "s"} (the task's${
        isolates > 1 ? ", the memory watchdog's" : ""
      }), at the cost of an empty one`,
      pss: isolates * (twoIsolates.pss - runtime.pss),
      uss: isolates * (twoIsolates.uss - runtime.uss),
    });
    const rest = (key: keyof Sample) =>
      total[key] - twoIsolates[key] - (isolates - 1) * (twoIsolates[key] - runtime[key]);
    rows.push({
      part: "the code and state of the host's main isolate and of the task (the rest)",
      pss: rest("pss"),
      uss: rest("uss"),
    });
    rows.push({ part: "a task process waiting on a timer, in all", ...total });
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
