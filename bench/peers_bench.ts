// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * Klym beside two peers that run tasks as coroutines in the server's own process, measured in one
 * run on one machine with one client, the Python MCP SDK over Streamable HTTP
 * (`bench/peers/peers_client.py`):
 * - Klym in memory mode and with its journal (a SQLite file), running `bench/kinds/`;
 * - FastMCP 3.4's background tasks (`bench/peers/fastmcp_server.py`, Docket in memory), the newest
 *   FastMCP that serves MCP tasks to a 2025-11-25 client;
 * - the seed design (`bench/peers/seed_server.py`): Klym's four tools over asyncio tasks.
 * The peers and the client come from PyPI, pinned in `bench/peers/requirements.txt` and installed
 * into `bench/peers/.venv` through the test peers' cache (`tests/peers/setup.ts`).
 *
 * Run: deno task bench:peers. It prints the figures as a Markdown table with their sample counts
 * and the load average during each server's run; nothing here passes or fails. PEERS_TRIVIAL
 * (500) and PEERS_SAMPLES (100 first lines, 4 × that many status calls) scale it; PEERS_ONLY
 * (e.g. `klym-memory,fastmcp`) runs some servers only, PEERS_FIGURES (e.g. `retained,cancel`)
 * some figures only. The figure `split` (Klym only, Linux) splits the memory of a task process
 * waiting on a timer by isolate (`bench/peers/isolate_split.ts`).
 */
import { setupVenv } from "../tests/peers/setup.ts";
import { freePort, startHttpPeer } from "../tests/peers/peers.ts";
import { startKlym } from "../tests/helpers/klym_process.ts";
import { readLines } from "../src/lines.ts";
import { percentile } from "./stats.ts";
import { isolateSplit } from "./peers/isolate_split.ts";
import { tsStatus } from "./peers/ts_status.ts";

const HERE = new URL(".", import.meta.url).pathname;
const PEERS = `${HERE}peers/`;
const VENV = {
  link: `${PEERS}.venv`,
  requirements: `${PEERS}requirements.txt`,
  prefix: "venv-bench",
};
const PYTHON = `${VENV.link}/bin/python`;

function envInt(name: string, fallback: number): number {
  const value = Deno.env.get(name);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number from 1`);
  return n;
}

const SAMPLES = envInt("PEERS_SAMPLES", 100);
/** What the client does, the same for every server. */
const SETTINGS = {
  trivial: envInt("PEERS_TRIVIAL", 500),
  first_line: SAMPLES,
  /** Between first-line samples: a warm host replaces the one a task took. */
  pace_ms: 200,
  status: SAMPLES * 4,
  waiting: 8,
  holding: 4,
  retained: 40,
  /** After them, seconds the server sits idle before the settled figure (no forced collection). */
  retained_idle_s: envInt("PEERS_RETAINED_IDLE_S", 30),
  steady_s: 3,
  cancels: 10,
  /** A peer's CPU loop ends by itself after this long (a peer cannot stop it). */
  peer_spin_s: 3,
  /** Some figures only (the client's names: status, first_line, trivial, waiting, …); all by default. */
  figures: Deno.env.get("PEERS_FIGURES")?.split(",") ?? null,
};

/** How long Klym keeps a host idle for its principal's next task, in this bench. */
const KLYM_IDLE_HOST_S = 2;

type ServerName = "klym-memory" | "klym-journal" | "fastmcp" | "seed";
const SERVERS: readonly ServerName[] = ["klym-memory", "klym-journal", "fastmcp", "seed"];
const TITLES: Record<ServerName, string> = {
  "klym-memory": "Klym (memory)",
  "klym-journal": "Klym (journal)",
  fastmcp: "FastMCP 3.4.11",
  seed: "seed design",
};

/** A server under test: its MCP endpoint and its process, whose tree the bench measures. */
interface Served extends AsyncDisposable {
  readonly url: string;
  readonly pid: number;
  /** Klym only: its V8 heap after a full collection, read through the inspector. */
  readonly heap?: Inspector;
}

/** Just enough of the V8 inspector protocol to collect garbage and read the heap's size. */
class Inspector {
  #socket: WebSocket;
  #next = 1;
  readonly #pending = new Map<number, (result: Record<string, unknown>) => void>();

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (e) => {
      const message = JSON.parse(e.data);
      this.#pending.get(message.id)?.(message.result ?? {});
      this.#pending.delete(message.id);
    };
  }

  static async connect(url: string): Promise<Inspector> {
    const socket = new WebSocket(url);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = reject;
    });
    return new Inspector(socket);
  }

  #send(method: string): Promise<Record<string, unknown>> {
    const id = this.#next++;
    const { promise, resolve } = Promise.withResolvers<Record<string, unknown>>();
    this.#pending.set(id, resolve);
    this.#socket.send(JSON.stringify({ id, method }));
    return promise;
  }

  /** MB of heap in use after a full collection. */
  async usedMb(): Promise<number> {
    await this.#send("HeapProfiler.collectGarbage");
    const usage = await this.#send("Runtime.getHeapUsage");
    return (usage.usedSize as number) / 1e6;
  }

  close(): void {
    this.#socket.close();
  }
}

async function startServer(name: ServerName, stateDir: string): Promise<Served> {
  if (name === "klym-memory" || name === "klym-journal") {
    const klym = await startKlym({
      KLYM_TASKS_DIR: `${HERE}kinds`,
      KLYM_STATE: name === "klym-memory" ? "memory" : `${stateDir}/klym.db`,
      KLYM_LOG_LEVEL: "info",
      // Hosts kept idle (30 s by default) exit before a memory figure (`idle_wait_s`), so that it
      // counts each task's whole process; no figure has a gap of 2 s between one principal's tasks.
      KLYM_IDLE_HOST_S: String(KLYM_IDLE_HOST_S),
    }, { denoArgs: [`--inspect=127.0.0.1:${freePort()}`] });
    const ws = klym.logs.map((l) => /ws:\/\/\S+/.exec(l)?.[0]).find(Boolean);
    if (!ws) throw new Error("Klym's inspector did not say where it listens");
    const heap = await Inspector.connect(ws);
    return {
      url: `${klym.url}/mcp`,
      pid: klym.pid,
      heap,
      async [Symbol.asyncDispose]() {
        heap.close();
        await klym[Symbol.asyncDispose]();
      },
    };
  }
  const script = `${PEERS}${name === "fastmcp" ? "fastmcp_server.py" : "seed_server.py"}`;
  const peer = await startHttpPeer(name, (port) => [PYTHON, script, String(port)], {
    env: { HOME: stateDir, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
  });
  return { url: peer.url, pid: peer.pid, [Symbol.asyncDispose]: () => peer.stop() };
}

/** A process and all its descendants (Linux: every thread's children). */
function tree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const thread of Deno.readDirSync(`/proc/${out[i]}/task`)) {
        const text = Deno.readTextFileSync(`/proc/${out[i]}/task/${thread.name}/children`);
        out.push(...text.trim().split(/\s+/).filter(Boolean).map(Number));
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

interface Memory {
  rss: number;
  pss: number;
  heap?: number;
  /** Klym only: the tree's RSS again after the full collection. */
  rss_gc?: number;
}

/**
 * RSS and PSS (MB) of the server's whole process tree as the OS sees them (garbage not yet
 * collected included), then Klym's heap after a full collection: what it really keeps.
 */
async function measure(server: Served): Promise<Memory> {
  const { rss, pss } = resident(server);
  const heap = await server.heap?.usedMb();
  if (heap === undefined) return { rss, pss };
  return { rss, pss, heap, rss_gc: resident(server).rss };
}

function resident(server: Served): { rss: number; pss: number } {
  let rss = 0;
  let pss = 0;
  for (const pid of tree(server.pid)) {
    try {
      const text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
      const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)![1]);
      rss += kb("Rss") / 1024;
      pss += kb("Pss") / 1024;
    } catch {
      // Gone meanwhile.
    }
  }
  return { rss, pss };
}

/** CPU ticks (1/100 s) a process has used; `undefined` once it is gone (or a zombie). */
function ticks(pid: number): number | undefined {
  try {
    const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!.split(" ");
    if (fields[0] === "Z") return undefined;
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The process of the server's tree that runs the loop: the one warm host that was waiting before
 * the task started and still lives, or else the one busy in each of two windows (a warm host
 * starting meanwhile is busy in the first one only).
 */
async function spinning(server: Served, before: readonly number[]): Promise<number> {
  const pids = tree(server.pid);
  const waited = pids.filter((pid) => pid !== server.pid && before.includes(pid));
  if (waited.length === 1) return waited[0]!;
  const samples = [pids.map(ticks)];
  for (let i = 0; i < 2; i++) {
    await sleep(250);
    samples.push(pids.map(ticks));
  }
  const used = (window: number, i: number) =>
    (samples[window + 1]![i] ?? 0) - (samples[window]![i] ?? 0);
  let best = server.pid;
  let most = -1;
  pids.forEach((pid, i) => {
    const least = Math.min(used(0, i), used(1, i));
    if (least > most) [best, most] = [pid, least];
  });
  return best;
}

/**
 * When the loop's CPU was released, in ms after `t0` (epoch ms): a task process's end for Klym;
 * for a peer, whose loop runs in the server's own process, the start of 100 ms without CPU.
 */
async function released(server: Served, pid: number, t0: number): Promise<number | null> {
  const deadline = Date.now() + 60_000;
  if (pid !== server.pid) {
    while (ticks(pid) !== undefined && Date.now() < deadline) await sleep(1);
    return Date.now() < deadline ? Date.now() - t0 : null;
  }
  const seen: { at: number; ticks: number }[] = [];
  while (Date.now() < deadline) {
    seen.push({ at: Date.now(), ticks: ticks(pid) ?? 0 });
    const now = seen.at(-1)!;
    const start = seen.find((s) => now.at - s.at <= 100);
    if (start && now.at - start.at >= 90 && now.ticks - start.ticks <= 1) return start.at - t0;
    await sleep(10);
  }
  return null;
}

/** The 1-minute load average, sampled every second while the bench runs. */
class LoadSampler {
  readonly samples: number[] = [];
  readonly #timer = setInterval(() => this.samples.push(loadNow()), 1000);
  constructor() {
    this.samples.push(loadNow());
  }
  stop(): void {
    clearInterval(this.#timer);
  }
}

function loadNow(): number {
  return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
}

// deno-lint-ignore no-explicit-any -- the client's raw samples, read by the figures below
type Done = Record<string, any>;

/** Runs the client against one server, answering its questions about memory and CPU. */
async function drive(name: ServerName, server: Served): Promise<Done> {
  const kind = name.startsWith("klym") ? "klym" : name;
  const settings = {
    ...SETTINGS,
    cancels: kind === "klym" ? SETTINGS.cancels : 2,
    idle_wait_s: kind === "klym" ? KLYM_IDLE_HOST_S + 1 : 0,
  };
  const child = new Deno.Command(PYTHON, {
    args: [`${PEERS}peers_client.py`, kind, server.url, JSON.stringify(settings)],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const input = child.stdin.getWriter();
  const answer = (value: unknown) =>
    input.write(new TextEncoder().encode(`${JSON.stringify(value)}\n`));
  let done: Done | undefined;
  let target = server.pid;
  let before: number[] = [];
  for await (const { line } of readLines(child.stdout, 1 << 26)) {
    const message = JSON.parse(line);
    if (message.note) console.error(`  ${message.note}`);
    else if (message.done) done = message.done;
    else if (message.ask?.measure) await answer(await measure(server));
    else if (message.ask?.resident) await answer(resident(server));
    else if (message.ask?.before) {
      before = tree(server.pid);
      await answer({ pids: before });
    } else if (message.ask?.target) {
      target = await spinning(server, before);
      await answer({ pid: target });
    } else if (message.ask && "released" in message.ask) {
      await answer(await released(server, target, message.ask.released));
    }
  }
  await input.close().catch(() => {});
  const { code } = await child.status;
  if (!done || code !== 0) {
    throw new Error(`The client against ${name} failed (exit ${code}):\n${await stderr}`);
  }
  return done;
}

const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const ms = (samples: number[]) =>
  `${f1(percentile(samples, 0.5))} / ${f1(percentile(samples, 0.99))} ms`;
const perTask = (m: Done, key: "pss" | "rss" | "heap" | "rss_gc") =>
  (m.during?.[key] ?? m.after[key]) - m.before[key];

type Row = [figure: string, label: string, cell: (d: Done, name: ServerName) => string];

/** One row per figure of the issue's table, one column per server. */
function rows(): Row[] {
  return [
    [
      "trivial",
      `${SETTINGS.trivial} trivial tasks started back to back, all finished`,
      (d) =>
        `${f1(d.trivial.all_done_s)} s${
          d.trivial.ok < d.trivial.n ? ` (${d.trivial.ok} of ${d.trivial.n} succeeded)` : ""
        }`,
    ],
    [
      "first_line",
      "start → first line of a custom kind, p50 / p99",
      (d) => ms(d.first_line.samples),
    ],
    [
      "waiting",
      "added memory per task waiting on a timer (PSS)",
      (d) => `${f2(perTask(d.waiting, "pss") / d.waiting.n)} MB`,
    ],
    [
      "holding",
      "added memory per task holding 50 MB (PSS)",
      (d) => `${f1(perTask(d.holding, "pss") / d.holding.n)} MB`,
    ],
    [
      "cancel",
      "cancel of a CPU loop: terminal / CPU released",
      (d, name) => {
        const runs = d.cancel.runs as {
          status: string;
          start_ms: number;
          terminal_ms: number;
          released_ms: number;
        }[];
        const terminal = runs.map((r) => r.terminal_ms);
        // A release not seen within 60 s counts as 60 s.
        const gone = runs.map((r) => r.released_ms ?? 60_000);
        if (name.startsWith("klym")) {
          return `${f1(percentile(terminal, 0.5))} / ${f1(percentile(gone, 0.5))} ms (max ${
            f1(Math.max(...gone))
          })`;
        }
        // The loop holds the server's one thread: the cancel, or even the start's answer, waits
        // for its end.
        const loopMs = SETTINGS.peer_spin_s * 1000;
        const starts = runs.map((r) => r.start_ms);
        if (Math.min(...starts) >= loopMs * 0.9) {
          return `cannot cancel: even the start was answered only after the ${SETTINGS.peer_spin_s} s loop ended (${
            f1(percentile(starts, 0.5))
          } ms)`;
        }
        const held = Math.min(...terminal) >= (loopMs - 500) * 0.9;
        return `${held ? "cannot cancel: " : ""}${f1(percentile(terminal, 0.5))} / ${
          f1(percentile(gone, 0.5))
        } ms${held ? ` (the ${SETTINGS.peer_spin_s} s loop ran to its end)` : ""}`;
      },
    ],
    [
      "retained",
      "server RSS per retained 1 MB result, at once (Klym: once its kept hosts exited, 3 s)",
      (d) => {
        const r = d.retained;
        return `${f2((r.soon.rss - r.before.rss) / r.n)} MB (${f1(r.before.rss)} → ${
          f1(r.soon.rss)
        } MB over ${r.n})`;
      },
    ],
    [
      "retained",
      `the same once idle ${SETTINGS.retained_idle_s} s (collected by the runtime, not forced)`,
      (d) => {
        const r = d.retained;
        const fell = r.idle.findIndex((rss: number) =>
          rss < r.soon.rss - 0.1 * (r.soon.rss - r.before.rss)
        );
        const heap = r.after.heap === undefined
          ? ""
          : `, heap ${f2(perTask(r, "heap") / r.n)} MB, RSS after a forced full GC ${
            f2(perTask(r, "rss_gc") / r.n)
          } MB`;
        return `${f2(perTask(r, "rss") / r.n)} MB (→ ${f1(r.after.rss)} MB; ${
          fell < 0 ? "no fall" : `fell ${fell} s after the first reading`
        }${heap})`;
      },
    ],
    ["status", "`check_task_status` server time (raw HTTP), p50 / p99", (d) => ms(d.status.raw)],
    ["status", "the same through the Python SDK, p50 / p99", (d) => ms(d.status.sdk)],
    [
      "status",
      "of which the SDK's check against the tool's outputSchema, p50 / p99",
      (d) => d.status.validate?.length ? ms(d.status.validate) : "none (`tasks/get`)",
    ],
    ["status", "the same through the TypeScript SDK, p50 / p99", (d) => ms(d.status.ts)],
  ] as Row[];
}

function print(all: Map<ServerName, Done>, loads: Map<ServerName, number[]>): void {
  const names = [...all.keys()];
  console.log(`\n| figure | ${names.map((n) => TITLES[n]).join(" | ")} |`);
  console.log(`| --- | ${names.map(() => "---").join(" | ")} |`);
  for (const [figure, label, cell] of rows()) {
    if (!all.get(names[0]!)![figure]) continue;
    console.log(`| ${label} | ${names.map((n) => cell(all.get(n)!, n)).join(" | ")} |`);
  }
  const first = all.get(names[0]!)!;
  console.log(
    `\nSamples per server: ${SETTINGS.trivial} trivial tasks; ${
      first.first_line?.samples.length ?? 0
    } first lines (${SETTINGS.pace_ms} ms apart); ${SETTINGS.waiting} waiting and ${SETTINGS.holding} holding tasks at once (${SETTINGS.steady_s} s to settle); ${SETTINGS.retained} results; ${
      first.status?.raw.length ?? 0
    } status calls each way; results read again after ${SETTINGS.retained_idle_s} s idle; ${SETTINGS.cancels} cancels of Klym's loop, 2 of a peer's. Client: the Python MCP SDK, protocol ${first.protocol} (and for the status figure, the TypeScript SDK's \`Client\`, FastMCP's tasks through \`@modelcontextprotocol/ext-tasks\`).`,
  );
  const load = names.map((n) => {
    const s = loads.get(n)!;
    return `${TITLES[n]} ${f1(Math.min(...s))}–${f1(Math.max(...s))}`;
  });
  console.log(`Load average (1 min) during each server's run: ${load.join(", ")}.`);
}

const only = Deno.env.get("PEERS_ONLY")?.split(",") as ServerName[] | undefined;
for (const name of only ?? []) {
  if (!SERVERS.includes(name)) throw new Error(`PEERS_ONLY: unknown server "${name}"`);
}
await setupVenv(VENV);
console.log(
  `Klym beside its peers — ${Deno.build.target}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`,
);
const results = new Map<ServerName, Done>();
const loads = new Map<ServerName, number[]>();
const splitOnly = SETTINGS.figures?.length === 1 && SETTINGS.figures[0] === "split";
for (const name of splitOnly ? [] : only ?? SERVERS) {
  console.error(`${TITLES[name]}: starting`);
  const stateDir = await Deno.makeTempDir({ prefix: "klym-peers-bench-" });
  const load = new LoadSampler();
  try {
    await using server = await startServer(name, stateDir);
    const done = await drive(name, server);
    if (done.status) {
      const peer = name.startsWith("klym") ? "klym" : name as "fastmcp" | "seed";
      done.status.ts = await tsStatus(server.url, peer, SETTINGS.status);
    }
    results.set(name, done);
  } finally {
    load.stop();
    loads.set(name, load.samples);
    await Deno.remove(stateDir, { recursive: true });
  }
}
if (results.size) print(results, loads);
const klymRuns = (only ?? SERVERS).some((n) => n.startsWith("klym"));
if (klymRuns && (!SETTINGS.figures || SETTINGS.figures.includes("split"))) {
  const load = new LoadSampler();
  const copies = 4;
  const split = await isolateSplit(copies);
  load.stop();
  console.log(
    `\nMemory of a Klym task process waiting on a timer, by part (${copies} processes at once, mean per process):\n`,
  );
  console.log("| part | PSS | private |\n| --- | --- | --- |");
  for (const row of split) console.log(`| ${row.part} | ${f1(row.pss)} MB | ${f1(row.uss)} MB |`);
  console.log(
    `\nLoad average (1 min) during the split: ${f1(Math.min(...load.samples))}–${
      f1(Math.max(...load.samples))
    }.`,
  );
}
