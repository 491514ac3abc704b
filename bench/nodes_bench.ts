// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * Nodes sharing PostgreSQL, measured with real node processes: `main.ts` servers on loopback, each
 * with `KLYM_STATE=postgres://…` on one PostgreSQL started as the tests start theirs (initdb in a
 * temporary folder, `tests/helpers/postgres.ts`), driven by MCP clients over Streamable HTTP.
 *
 * Figures: `start` and claim latency (start → running) with 3 nodes, beside one node on a SQLite
 * journal measured at the same time; tasks per second with 1, 2 and 3 nodes; failover after a
 * SIGKILL of a node; a cancel made on another node until the task's process is gone; and how soon a
 * log line printed on one node reads on another. Each figure comes with its sample count, each
 * part with the machine's load average during it. Times of the tasks are the servers' own (one
 * machine, one clock), read from the database; nothing here passes or fails.
 *
 * Run: deno task bench:nodes (`NODES_BENCH_SCALE=0.2` for a quick, smaller run;
 * `NODES_BENCH_PARTS=throughput,cancel` for some parts only, of start, throughput, failover,
 * cancel and logs).
 */
import type { Client } from "@modelcontextprotocol/client";
import postgres from "postgres";
import {
  call,
  childPids,
  type KlymProcess,
  startKlym,
  type Status,
  waitLogged,
} from "../tests/helpers/klym_process.ts";
import { startPostgres, type TestPostgres } from "../tests/helpers/postgres.ts";
import { PATIENCE_MS } from "../tests/helpers/patience.ts";
import { LoadWatch, report } from "./stats.ts";

const SCALE = Number(Deno.env.get("NODES_BENCH_SCALE") ?? "1");
const scaled = (n: number) => Math.max(2, Math.round(n * SCALE));

/** `start` calls per mode: enough for a p99 that is not just the maximum. */
const STARTS = scaled(250);
/** Tasks queued or running at once while `start` and claims are measured (slots: 3 × 8). */
const IN_FLIGHT = 4;
/** Tasks of the throughput workload, per cluster size. */
const WORKLOAD = scaled(120);
/** SIGKILLs of a node, each with tasks of both sorts running on it. */
const KILLS = scaled(5);
/** Cancels made on a node other than the one running the task (and as many on that node). */
const CANCELS = scaled(60);
/** Log lines a task prints (one every 100 ms) while readers on its node and another poll them. */
const LOG_LINES = scaled(300);

const FINAL = ["succeeded", "failed", "cancelled", "timed_out", "interrupted"];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pad = 60;

/** One node process and an MCP client connected to it. */
interface Node {
  readonly id: string;
  readonly klym: KlymProcess;
  readonly client: Client;
}

async function startNode(state: string, id: string, env: Record<string, string> = {}) {
  const klym = await startKlym({
    KLYM_STATE: state,
    ...(state.startsWith("postgres://") ? { KLYM_NODE_ID: id } : {}),
    // Not debug: a node's stderr is kept in memory by the helper for the whole run ("info" has
    // the line the helper waits for).
    KLYM_LOG_LEVEL: "info",
    ...env,
  });
  return { id, klym, client: await klym.connect() } satisfies Node;
}

/** Nodes on one database, stopped (SIGTERM) together. */
class Cluster implements AsyncDisposable {
  readonly nodes: Node[] = [];
  constructor(readonly state: string) {}

  static async of(state: string, count: number, env: Record<string, string> = {}) {
    const cluster = new Cluster(state);
    for (let i = 1; i <= count; i++) await cluster.add(`node-${i}`, env);
    return cluster;
  }

  async add(id: string, env: Record<string, string> = {}): Promise<Node> {
    const node = await startNode(this.state, id, env);
    this.nodes.push(node);
    return node;
  }

  byId(id: string | null | undefined): Node | undefined {
    return this.nodes.find((n) => n.id === id);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.allSettled(this.nodes.map((n) => n.klym[Symbol.asyncDispose]()));
  }
}

/** A database of its own, with a connection the bench reads task rows through. */
async function database(pg: TestPostgres) {
  const url = await pg.database();
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  return Object.assign(sql, { url, [Symbol.asyncDispose]: () => sql.end({ timeout: 1 }) });
}

type Db = Awaited<ReturnType<typeof database>>;

const start = (client: Client, kind: string, params: Record<string, unknown> = {}) =>
  call<{ task_id: string }>(client, "start_async_agent_task", { kind, params }).then((s) =>
    s.task_id
  );

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const value = await fn();
  return [performance.now() - t0, value];
}

/** Polls `probe` every `everyMs` until it answers something other than `undefined`. */
async function until<T>(what: string, probe: () => Promise<T | undefined>, everyMs = 20) {
  const deadline = Date.now() + PATIENCE_MS;
  while (true) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Still not after ${PATIENCE_MS} ms: ${what}`);
    await sleep(everyMs);
  }
}

/** Waits until every task of the database is final; returns how many of each status. */
async function allFinal(sql: Db, count: number): Promise<Record<string, number>> {
  await until(`${count} tasks final`, async () => {
    const [row] = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM klym_tasks WHERE status = ANY(${FINAL})`;
    return row!.n >= count ? true : undefined;
  }, 100);
  const rows = await sql<{ status: string; n: number }[]>`
    SELECT status, count(*)::int AS n FROM klym_tasks GROUP BY status ORDER BY status`;
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** Tasks queued or running that `client`'s principal has, as `list_tasks` counts them. */
async function inFlight(client: Client): Promise<number> {
  const { counts } = await call<{ counts: Record<string, number> }>(client, "list_tasks", {
    limit: 1,
  });
  return (counts.queued ?? 0) + (counts.running ?? 0);
}

/**
 * `start` (the client's call), and start → running: the claim's time in the task's events (shared
 * store) and `started_at` as `check_task_status` shows it (the time its process was handed the
 * task). Starts are paced so that a free slot always waits: at most `IN_FLIGHT` tasks unfinished,
 * so the figure is the claim's, not a queue's.
 */
async function startAndClaim(pg: TestPostgres): Promise<void> {
  console.log(
    `\n# start and claim: ${STARTS} hello tasks started through node-1, at most ${IN_FLIGHT} unfinished at a time (24 slots)`,
  );
  const modes: [string, (db: Db) => Promise<Cluster>][] = [
    ["3 nodes, PostgreSQL", (db) => Cluster.of(db.url, 3)],
    ["1 node, SQLite journal (the base)", async () => {
      const dir = await Deno.makeTempDir({ prefix: "klym-nodes-bench-" });
      const cluster = new Cluster(`${dir}/klym.db`);
      await cluster.add("single");
      const dispose = cluster[Symbol.asyncDispose].bind(cluster);
      cluster[Symbol.asyncDispose] = async () => {
        await dispose();
        await Deno.remove(dir, { recursive: true });
      };
      return cluster;
    }],
  ];
  for (const [label, open] of modes) {
    const load = new LoadWatch();
    await using db = await database(pg);
    await using cluster = await open(db);
    const client = cluster.nodes[0]!.client;
    const ids: string[] = [];
    const starts: number[] = [];
    for (let i = 0; i < STARTS + 20; i++) {
      await until("a task to end", async () => (await inFlight(client)) < IN_FLIGHT || undefined);
      const [ms, id] = await timed(() => start(client, "hello"));
      if (i < 20) continue; // the first ones warm up the JIT
      starts.push(ms);
      ids.push(id);
      await sleep(50); // a client's pace
    }
    await until("every task to end", async () => (await inFlight(client)) === 0 || undefined);
    report(`start_async_agent_task, ${label}`, starts, "ms", pad);
    const running: number[] = [];
    const code: number[] = [];
    for (const id of ids) {
      const status = await call<Status>(client, "check_task_status", {
        task_id: id,
        max_log_lines: 0,
      });
      const created = Date.parse(status.created_at!);
      running.push(Date.parse(status.started_at!) - created);
      code.push(Date.parse(status.code_started_at!) - created);
    }
    if (cluster.state === db.url) {
      const rows = await db<{ claim: number; node: string }[]>`
        SELECT e.time - t.created_at AS claim, e.node
        FROM klym_tasks t JOIN klym_task_events e ON e.task = t.id
        WHERE e.status = 'running' AND e.attempt = 1 AND t.id = ANY(${ids})`;
      report("  claim: start → running (any node's claim)", rows.map((r) => r.claim), "ms", pad);
      const per = new Map<string, number>();
      for (const r of rows) per.set(r.node, (per.get(r.node) ?? 0) + 1);
      console.log(`  claimed by ${[...per].map(([n, c]) => `${n} ${c}`).join(", ")}`);
    }
    report("  start → started_at (its process handed the task)", running, "ms", pad);
    report("  start → its code running (code_started_at)", code, "ms", pad);
    console.log(`  ${load.stop()}`);
  }
}

/** The same workload through 1, 2 and 3 nodes: started round-robin, as a load balancer would. */
async function throughput(pg: TestPostgres): Promise<void> {
  const workloads: [string, string, Record<string, unknown>][] = [
    ["hello (prints, returns at once)", "hello", {}],
    ["sleep 2 s (a slot held, little CPU)", "sleep", { ms: 2000, tick_ms: 1000 }],
  ];
  for (const [label, kind, params] of workloads) {
    console.log(
      `\n# tasks per second: ${WORKLOAD} tasks of ${label}, 8 slots and 1 warm spare per node`,
    );
    for (const size of [1, 2, 3]) {
      const load = new LoadWatch();
      await using db = await database(pg);
      await using cluster = await Cluster.of(db.url, size);
      const ids: string[] = [];
      for (let i = 0; i < WORKLOAD; i++) {
        ids.push(await start(cluster.nodes[i % size]!.client, kind, params));
      }
      const statuses = await allFinal(db, WORKLOAD);
      const [span] = await db<{ first: number; last: number; nodes: number }[]>`
        SELECT min(created_at) AS first, max(finished_at) AS last, count(DISTINCT node)::int AS nodes
        FROM klym_tasks`;
      const seconds = (span!.last - span!.first) / 1000;
      console.log(
        `${size} node${size > 1 ? "s" : " "}: ${
          (WORKLOAD / seconds).toFixed(2)
        } tasks/s (${WORKLOAD} in ${seconds.toFixed(1)} s, first start → last end; ${
          JSON.stringify(statuses)
        }; ran on ${span!.nodes} nodes)  ${load.stop()}`,
      );
    }
  }
}

/** Rows of the tasks `ids`: node, status, attempt and the server's times. */
function rowsOf(db: Db, ids: readonly string[]) {
  return db<
    {
      id: string;
      node: string | null;
      status: string;
      attempt: number;
      retryable: boolean;
      started_at: number | null;
      code_started_at: number | null;
      finished_at: number | null;
      error: string | null;
    }[]
  >`SELECT id, node, status, attempt, retryable, started_at, code_started_at, finished_at, error
    FROM klym_tasks WHERE id = ANY(${ids as string[]})`;
}

/**
 * SIGKILL of a node running tasks of both sorts: kill → its plain tasks `interrupted`
 * (`node_lost`), as another node reports them; kill → its retryable ones running on another node,
 * and their code running again.
 */
async function failover(pg: TestPostgres): Promise<void> {
  console.log(
    `\n# failover: ${KILLS} SIGKILLs of a node running 2 plain and 2 retryable sleep tasks; 2 other nodes, defaults (KLYM_NODE_LEASE_MS 10000, KLYM_NODE_RENEW_MS 1000)`,
  );
  const load = new LoadWatch();
  await using db = await database(pg);
  await using cluster = await Cluster.of(db.url, 2);
  const [survivor] = cluster.nodes;
  const survivorsUp = Date.now();
  const interrupted: number[] = [];
  const claimed: number[] = [];
  const codeAgain: number[] = [];
  const leftBehind: number[] = [];
  for (let round = 1; round <= KILLS; round++) {
    const victim = await cluster.add(`victim-${round}`);
    // Started through the victim: it claims most of them; those another node takes are cancelled.
    const mine: string[] = [];
    const wanted = { sleep: 2, sleep_retryable: 2 };
    for (const kind of ["sleep", "sleep_retryable"] as const) {
      while (wanted[kind] > 0) {
        const id = await start(victim.client, kind, { ms: 600_000, tick_ms: 1000 });
        const row = await until(`task ${id} claimed`, async () => {
          const [row] = await rowsOf(db, [id]);
          return row?.status === "running" ? row : undefined;
        });
        if (row.node === victim.id) {
          mine.push(id);
          wanted[kind]--;
        } else await call(survivor!.client, "cancel_task", { task_id: id });
      }
    }
    for (const id of mine) await waitLogged(survivor!.client, id);
    // Only a node that renewed on time for a whole lease judges others.
    await sleep(Math.max(0, survivorsUp + 11_000 - Date.now()));
    const processes = childPids(victim.klym.pid);
    const killedAt = Date.now();
    victim.klym.signal("SIGKILL");
    await victim.klym.exited;
    cluster.nodes.splice(cluster.nodes.indexOf(victim), 1);
    for (const id of mine) {
      const row = await until(`task ${id} settled after the kill`, async () => {
        const status = await call<Status>(survivor!.client, "check_task_status", {
          task_id: id,
          max_log_lines: 0,
        });
        if (status.status === "interrupted") return { status, row: undefined };
        if (status.status !== "running") return undefined;
        const [row] = await rowsOf(db, [id]);
        // Its code started again there (the row keeps the first run's start until then).
        return row && row.node !== victim.id && (row.code_started_at ?? 0) > killedAt
          ? { status, row }
          : undefined;
      });
      if (row.row === undefined) {
        if (row.status.error?.code !== "node_lost") {
          throw new Error(`Task ${id} ended otherwise: ${JSON.stringify(row.status)}`);
        }
        interrupted.push(Date.parse(row.status.finished_at!) - killedAt);
      } else {
        const [event] = await db<{ time: number }[]>`
          SELECT time FROM klym_task_events
          WHERE task = ${id} AND status = 'running' AND attempt = ${row.row.attempt}`;
        claimed.push(event!.time - killedAt);
        codeAgain.push(row.row.code_started_at! - killedAt);
        await call(survivor!.client, "cancel_task", { task_id: id });
      }
    }
    // The killed node's task processes: do they outlive it?
    await sleep(2000);
    const alive = processes.filter((pid) => {
      try {
        return !/\) Z /.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
      } catch {
        return false;
      }
    });
    leftBehind.push(alive.length);
    for (const pid of alive) Deno.kill(pid, "SIGKILL");
  }
  report("SIGKILL → its plain tasks interrupted (node_lost)", interrupted, "ms", pad);
  report("SIGKILL → its retryable tasks claimed by another node", claimed, "ms", pad);
  report("SIGKILL → their code running again there", codeAgain, "ms", pad);
  console.log(
    `  task processes of the killed node still running 2 s after the settle: ${
      leftBehind.join(", ")
    } (per kill)`,
  );
  console.log(`  ${load.stop()}`);
}

/**
 * A CPU loop cancelled on a node other than its own, and on its own as the base: `cancel_task`'s
 * answer, and from that answer until the task's process is gone. No warm spares, one task at a
 * time: the owner's one child process is the task's.
 */
async function cancelAcross(pg: TestPostgres): Promise<void> {
  console.log(
    `\n# cancel: ${CANCELS} spin tasks cancelled on another node, ${CANCELS} on their own`,
  );
  const load = new LoadWatch();
  await using db = await database(pg);
  await using cluster = await Cluster.of(db.url, 3, { KLYM_WARM_SPARES: "0" });
  const samples = {
    other: { answer: [] as number[], gone: [] as number[] },
    own: { answer: [] as number[], gone: [] as number[] },
  };
  for (let i = 0; i < CANCELS * 2; i++) {
    const via = cluster.nodes[i % cluster.nodes.length]!;
    const id = await start(via.client, "spin");
    await waitLogged(via.client, id);
    const [row] = await rowsOf(db, [id]);
    const owner = cluster.byId(row?.node)!;
    const [pid, ...more] = childPids(owner.klym.pid);
    if (pid === undefined || more.length > 0) {
      throw new Error(`${owner.id} has ${more.length + 1} task processes, expected 1`);
    }
    const where = i % 2 === 0 ? "other" : "own";
    const others = cluster.nodes.filter((n) => n !== owner);
    const canceller = where === "own" ? owner : others[i % others.length]!;
    const [answer] = await timed(() => call(canceller.client, "cancel_task", { task_id: id }));
    const answered = performance.now();
    while (childPids(owner.klym.pid).includes(pid)) await sleep(2);
    samples[where].answer.push(answer);
    samples[where].gone.push(performance.now() - answered);
  }
  report("cancel_task's answer, on another node", samples.other.answer, "ms", pad);
  report("that answer → the task's process gone", samples.other.gone, "ms", pad);
  report("cancel_task's answer, on the owning node (base)", samples.own.answer, "ms", pad);
  report("that answer → the task's process gone", samples.own.gone, "ms", pad);
  const over = samples.other.gone.filter((ms) => ms > 1200).map((ms) => ms.toFixed(0));
  console.log(
    `  across nodes, gone later than 1.2 s: ${over.length} of ${samples.other.gone.length}${
      over.length > 0 ? ` (${over.join(", ")} ms)` : ""
    }`,
  );
  console.log(`  ${load.stop()}`);
}

/**
 * A task prints a line every 100 ms on its node; one client polls it on that node, another on a
 * second node: from the line's receipt on its node (its `time`) until each reader has it.
 */
async function logFreshness(pg: TestPostgres): Promise<void> {
  console.log(`\n# log freshness: ${LOG_LINES} lines, one every 100 ms`);
  const load = new LoadWatch();
  await using db = await database(pg);
  await using cluster = await Cluster.of(db.url, 2);
  const id = await start(cluster.nodes[0]!.client, "sleep", {
    ms: LOG_LINES * 100 + 50,
    tick_ms: 100,
  });
  const [row] = await until(`task ${id} running`, async () => {
    const rows = await rowsOf(db, [id]);
    return rows[0]?.status === "running" ? rows : undefined;
  });
  const owner = cluster.byId(row!.node)!;
  const other = cluster.nodes.find((n) => n !== owner)!;
  const readersFrom = Date.now();
  const read = async (client: Client): Promise<number[]> => {
    const ages: number[] = [];
    let cursor = 0;
    while (true) {
      const status = await call<Status>(client, "check_task_status", {
        task_id: id,
        log_cursor: cursor,
      });
      const now = Date.now();
      for (const line of status.logs) {
        // A line printed before the readers began would count their own late start.
        if (Date.parse(line.time) >= readersFrom) ages.push(now - Date.parse(line.time));
      }
      cursor = status.next_log_cursor;
      if (FINAL.includes(status.status) && status.logs.length === 0) return ages;
      await sleep(5);
    }
  };
  const [here, there] = await Promise.all([read(owner.client), read(other.client)]);
  report("a line → readable on its own node (base)", here, "ms", pad);
  report("a line → readable on another node", there, "ms", pad);
  console.log(`  ${load.stop()}`);
}

console.log(
  `Klym nodes benchmark — ${Deno.build.target}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, scale ${SCALE}`,
);
const PARTS: Record<string, (pg: TestPostgres) => Promise<void>> = {
  start: startAndClaim,
  throughput,
  failover,
  cancel: cancelAcross,
  logs: logFreshness,
};
const chosen = (Deno.env.get("NODES_BENCH_PARTS") ?? Object.keys(PARTS).join(",")).split(",");
const unknown = chosen.filter((part) => !(part in PARTS));
if (unknown.length > 0) {
  throw new Error(
    `Unknown NODES_BENCH_PARTS ${unknown.join(", ")}: use some of ${Object.keys(PARTS).join(", ")}`,
  );
}
const pg = await startPostgres();
try {
  for (const part of chosen) await PARTS[part]!(pg);
} finally {
  await pg.stop();
}
