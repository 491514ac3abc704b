/**
 * The acceptance run of Klym nodes sharing PostgreSQL, on one machine: a PostgreSQL of its own on
 * loopback, three real Klym nodes (each its own process, port and task processes) and a grynya
 * stand-in that counts task runs (each run of `counted` creates one entity named after its task).
 * 300 short tasks, every fifth retryable; 20 held ones (retryable) are cancelled through another
 * node than the one running them, half before and half after the trouble: a node killed with
 * SIGKILL mid-run, PostgreSQL restarted, the killed node found lost and started again. Every task
 * ends, none runs twice unless retryable, every cancelled process is gone within 1.2 s of the
 * cancel's answer, every node tells the same, no node exits and no process is left behind.
 * Sessions of the 2025 era are forwarded to their node, or answered 404 once it is gone.
 */
import assert from "node:assert/strict";
import type { Client } from "@modelcontextprotocol/client";
import { call, type KlymProcess, startKlym, type Status } from "../helpers/klym_process.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";
import { startPostgres } from "../helpers/postgres.ts";
import { GoneWatch, processStat } from "../helpers/process_gone.ts";
import { RawMcp } from "../helpers/raw_mcp.ts";
import { startCounter } from "../helpers/start_counter.ts";
import { freePort } from "../peers/peers.ts";
import postgres from "postgres";

const TOKEN = "acceptance-token";
const TASKS = 300;
const HELD = 20;
/** The bound: from the cancel's answer to the task's process being gone. */
const CANCEL_GONE_MS = 1200;
/** KLYM_MAX_ATTEMPTS' default: the runs a retryable task may have in all. */
const MAX_ATTEMPTS = 3;
const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "interrupted"]);

/**
 * Asks `check` every `everyMs` until it returns a value; fails saying `what` once PATIENCE_MS have
 * passed without one, or, when `progress` is given, without a change of what it counts (a wait
 * for many events in a row on a loaded machine is bounded by the wait for each).
 */
async function until<T>(
  what: () => string,
  check: () => Promise<T | undefined> | T | undefined,
  everyMs = 100,
  progress?: () => number,
): Promise<T> {
  let deadline = Date.now() + PATIENCE_MS;
  let last = progress?.();
  while (true) {
    const value = await check();
    if (value !== undefined) return value;
    const now = progress?.();
    if (now !== last) (last = now, deadline = Date.now() + PATIENCE_MS);
    if (Date.now() > deadline) {
      throw new Error(
        `Still not, after ${PATIENCE_MS} ms${progress ? " without progress" : ""}: ${what()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Every live process under `pid` (Linux), children hang under the thread that spawned them. */
function descendants(pid: number): number[] {
  const children = new Set<number>();
  try {
    for (const thread of Deno.readDirSync(`/proc/${pid}/task`)) {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${thread.name}/children`).trim();
      for (const child of text.split(/\s+/).filter(Boolean)) children.add(Number(child));
    }
  } catch {
    return []; // Gone.
  }
  return [...children].flatMap((child) => [child, ...descendants(child)]);
}

const alive = (pid: number) => {
  const stat = processStat(pid);
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X";
};

/** Runs `fn` over `items`, `width` at a time. */
async function inBatches<T, R>(items: readonly T[], width: number, fn: (item: T) => Promise<R>) {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) {
    out.push(...await Promise.all(items.slice(i, i + width).map(fn)));
  }
  return out;
}

/** `promise`'s value, or `undefined` once `ms` have passed without one. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const health = async (node: KlymProcess) =>
  (await (await fetch(`${node.url}/healthz`)).json()) as { ok: boolean };

Deno.test("three nodes on one PostgreSQL: a node killed, cancels across nodes, a database restart", async () => {
  const began = Date.now();
  const gone = await GoneWatch.start();
  const pg = await startPostgres();
  const counter = startCounter();
  const url = await pg.database();
  // Fixed ports: n3 comes back where its URL says.
  const ports = [freePort(), freePort(), freePort()];
  const env = (i: number) => ({
    KLYM_STATE: url,
    KLYM_NODE_ID: `n${i + 1}`,
    KLYM_NODE_URL: `http://127.0.0.1:${ports[i]}`,
    KLYM_AUTH_TOKEN: TOKEN,
    KLYM_GRYNYA_URL: counter.url,
    KLYM_MAX_CONCURRENT: "4",
    // Leases and renewals at their defaults (10 s, once a second): a 5 s lease let a live node
    // that stalled on a machine loaded by two test suites be found lost.
    KLYM_LOG_LEVEL: "info",
  });
  // The cancel bound is the product's: the nodes run without a coverage run's collection.
  const nodes: KlymProcess[] = await Promise.all(
    [0, 1, 2].map((i) => startKlym(env(i), { port: ports[i]!, withoutCoverage: true })),
  );
  const up = [true, true, true];
  const killed: KlymProcess[] = [];
  const orphans: number[] = [];
  const phases: string[] = [];
  /** The test's own look at the shared store (nodes, claims), once PostgreSQL has restarted. */
  let db: postgres.Sql | undefined;
  const phase = (name: string) =>
    phases.push(`${name} ${((Date.now() - began) / 1000).toFixed(1)} s`);
  try {
    const clients = await Promise.all(nodes.map((n) => n.connect()));
    const status = (client: Client, taskId: string) =>
      call<Status>(client, "check_task_status", { task_id: taskId, max_log_lines: 1000 });

    // A 2025 session of n3, used through n1: forwarded with its token, refused without one.
    const own = new RawMcp(nodes[2]!.url, TOKEN);
    await own.initialize();
    assert.match(own.sessionId, /^n3\./);
    const via = new RawMcp(nodes[0]!.url, TOKEN);
    via.sessionId = own.sessionId;
    const listed = await via.request("tools/list");
    assert.ok(Array.isArray(listed.result?.tools), JSON.stringify(listed));
    const anonymous = new RawMcp(nodes[0]!.url);
    anonymous.sessionId = own.sessionId;
    assert.equal((await anonymous.post({ jsonrpc: "2.0", id: 1, method: "ping" })).status, 401);
    const stranger = new RawMcp(nodes[0]!.url, TOKEN);
    stranger.sessionId = "elsewhere.00000000-0000-0000-0000-000000000000";
    const unknown = await stranger.post({ jsonrpc: "2.0", id: 1, method: "ping" });
    await unknown.body?.cancel();
    assert.equal(unknown.status, 404, "a session of no registered node is not found");

    // 300 short tasks started through every node; every 15th is held until cancelled.
    const isHeld = (i: number) => i % 15 === 7;
    const specs = Array.from({ length: TASKS }, (_, i) => ({
      kind: i % 5 === 0 || isHeld(i) ? "counted_retryable" : "counted",
      params: isHeld(i) ? { hold: true } : { ms: 50 + (i % 4) * 50 },
    }));
    const ids = await inBatches(specs.map((spec, i) => ({ spec, i })), 30, async ({ spec, i }) => {
      const started = await call<{ task_id: string }>(
        clients[i % 3]!,
        "start_async_agent_task",
        spec,
      );
      return started.task_id;
    });
    phase("started");
    const held = new Set(ids.filter((_, i) => isHeld(i)));
    assert.equal(held.size, HELD);
    const retryable = new Set(ids.filter((_, i) => specs[i]!.kind === "counted_retryable"));

    // Held tasks are cancelled as they run, each through a node other than its own; the
    // process's end is noted on a thread of its own (GoneWatch), from the cancel's answer.
    const cancels: { id: string; owner: number; via: number; goneMs: number }[] = [];
    const seen = new Map<string, string>();
    /** The pid the task's latest run logged (a task run again logs its new one after the old). */
    const lastPid = async (id: string) => {
      let pid = 0;
      for (let cursor = 0;;) {
        const s = await call<Status>(clients[0]!, "check_task_status", {
          task_id: id,
          log_cursor: cursor,
          max_log_lines: 1000,
        });
        for (const line of s.logs) pid = Number(/^pid (\d+)$/.exec(line.text)?.[1] ?? pid);
        if (s.logs.length === 0) return pid;
        cursor = s.next_log_cursor;
      }
    };
    // Held tasks run as the queue reaches them: patience runs from the last cancel made.
    const cancelHeld = (count: number) =>
      until(
        () => `${count} more held tasks cancelled: ${[...seen.values()].join("; ")}`,
        async () => {
          const { tasks } = await call<{ tasks: { task_id: string }[] }>(
            clients[0]!,
            "list_tasks",
            {
              status: "running",
              limit: 100,
            },
          );
          for (const { task_id: id } of tasks) {
            if (!held.has(id) || count === 0) continue;
            const pid = await lastPid(id);
            seen.set(id, `${id} pid ${pid}`);
            const owner = pid
              ? nodes.findIndex((n, i) => up[i] && descendants(n.pid).includes(pid))
              : -1;
            if (owner < 0) continue; // Its process has not said its pid yet.
            const other = [1, 2].map((k) => (owner + k) % 3).find((i) => up[i])!;
            const reply = await call<{ status: string }>(clients[other]!, "cancel_task", {
              task_id: id,
            });
            const answered = Date.now();
            assert.equal(reply.status, "cancelled");
            const goneAt = await within(gone.gone(pid), PATIENCE_MS);
            cancels.push({ id, owner, via: other, goneMs: (goneAt ?? Infinity) - answered });
            held.delete(id);
            count--;
          }
          return count === 0 ? true : undefined;
        },
        100,
        () => cancels.length,
      );
    await cancelHeld(HELD / 2);
    phase("10 cancelled");

    // Mid-run, n3 dies with work of its own.
    const { counts: before } = await call<{ counts: Record<string, number> }>(
      clients[0]!,
      "list_tasks",
      {},
    );
    assert((before.queued ?? 0) > 0, `mid-run: ${JSON.stringify(before)}`);
    orphans.push(...descendants(nodes[2]!.pid));
    nodes[2]!.signal("SIGKILL");
    await nodes[2]!.exited;
    killed.push(nodes[2]!);
    up[2] = false;
    // Its sessions are gone too: a request for one is answered 404, and clients open a new one.
    const afterKill = await via.post({ jsonrpc: "2.0", id: 2, method: "ping" });
    await afterKill.body?.cancel();
    assert.equal(afterKill.status, 404);
    phase("n3 killed");

    // PostgreSQL restarts; the nodes go on, /healthz says what they see.
    await pg.halt();
    try {
      await until(
        () => "n1 sees the database gone",
        async () => (await health(nodes[0]!)).ok === false || undefined,
      );
    } finally {
      await pg.start();
    }
    for (const node of nodes.slice(0, 2)) {
      await until(
        () => `${node.url} sees the database back`,
        async () => (await health(node)).ok || undefined,
      );
    }
    phase("PostgreSQL restarted");

    // n1 and n2 find n3 lost once its lease has run out: its running tasks are settled there.
    const sql = db = postgres(url, { max: 1, onnotice: () => {} });
    await until(() => "n3 found lost", async () => {
      const [row] = await sql<{ alive: boolean }[]>`SELECT alive FROM klym_nodes WHERE id = 'n3'`;
      return row?.alive === false || undefined;
    });
    phase("n3 lost");

    // n3 comes back under its id and port.
    nodes[2] = await startKlym(env(2), { port: ports[2]!, withoutCoverage: true });
    clients[2] = await nodes[2].connect();
    up[2] = true;
    phase("n3 back");

    await cancelHeld(HELD / 2);
    phase("20 cancelled");

    // Every task ends; every node tells the same.
    const finals = await inBatches(ids, 20, (id) =>
      until(() => `task ${id} final`, async () => {
        const s = await status(clients[0]!, id);
        return FINAL.has(s.status) ? s : undefined;
      }));
    phase("all final");
    // None runs twice unless retryable: by the runs grynya saw, and by the claims the database
    // counted (a run killed before its code reached grynya is a claim all the same).
    const starts = counter.starts();
    const attempts = new Map(
      (await sql<{ id: string; attempt: number }[]>`SELECT id, attempt FROM klym_tasks`)
        .map((row) => [row.id, row.attempt]),
    );
    for (const [i, id] of ids.entries()) {
      const most = retryable.has(id) ? MAX_ATTEMPTS : 1;
      const runs = starts.get(id) ?? 0;
      assert(runs <= most, `task ${id} ran ${runs} times`);
      assert((attempts.get(id) ?? 0) <= most, `task ${id} was claimed ${attempts.get(id)} times`);
      if (finals[i]!.status === "succeeded") assert(runs >= 1, `task ${id} succeeded unseen`);
    }
    const counts: Record<string, number> = {};
    for (const f of finals) counts[f.status] = (counts[f.status] ?? 0) + 1;
    // Held tasks end cancelled; the others succeed, or were interrupted where n3 ran them, found
    // lost by another node.
    for (const [i, id] of ids.entries()) {
      const final = finals[i]!;
      if (isHeld(i)) assert.equal(final.status, "cancelled", `held task ${id}`);
      else if (final.status !== "succeeded") {
        assert.equal(final.status, "interrupted", `task ${id}: ${JSON.stringify(final.error)}`);
        assert(!retryable.has(id), `retryable task ${id} interrupted`);
        assert.equal(final.error?.code, "node_lost");
        assert.match(final.error?.message ?? "", /"n3"/);
      }
    }
    const lost = finals.filter((f) => f.status === "interrupted").length;
    const again = [...retryable].filter((id) => (attempts.get(id) ?? 0) > 1).length;
    const goneMs = cancels.map((c) => c.goneMs).sort((a, b) => a - b);
    // deno-lint-ignore no-console -- the run's figures, for the report
    console.log(
      `statuses ${JSON.stringify(counts)}, interrupted ${lost}, retryable run again ${again};`,
      `cancel answered to process gone (ms, ${goneMs.length}): ${goneMs.join(" ")};`,
      `phases: ${phases.join(", ")}`,
    );
    assert.equal(cancels.length, HELD);
    for (const { id, owner, via, goneMs } of cancels) {
      assert.notEqual(owner, via);
      assert(
        goneMs <= CANCEL_GONE_MS,
        `task ${id}'s process (on n${owner + 1}, cancelled through n${
          via + 1
        }) took ${goneMs} ms to go after the cancel's answer`,
      );
    }
    assert(lost + again > 0, "the killed node ran nothing");

    const view = (s: Status) =>
      JSON.stringify({
        status: s.status,
        error: s.error?.code,
        result: s.result,
        finished: s.finished_at,
        logs: s.logs.map((l) => `${l.seq} ${l.stream} ${l.time} ${l.text}`),
      });
    // Log lines of other nodes arrive by notification: each node tells the same once they have.
    await inBatches(ids, 10, (id) => {
      let views: string[] = [];
      return until(() => `task ${id} the same on every node:\n${views.join("\n")}`, async () => {
        views = (await Promise.all(clients.map((c) => status(c, id)))).map(view);
        return views.every((v) => v === views[0]) || undefined;
      });
    });

    // No node exited.
    for (const node of nodes) {
      const exited = await Promise.race([node.exited, Promise.resolve(undefined)]);
      assert.equal(exited, undefined, "a node exited");
    }
    await own.close().catch(() => {});
  } catch (error) {
    // What the nodes logged is what tells why: kept beside the failure.
    const dir = await Deno.makeTempDir({ prefix: "klym-acceptance-" });
    for (const [i, node] of [...killed, ...nodes].entries()) {
      await Deno.writeTextFile(`${dir}/node-${i}-${node.pid}.log`, node.logs.join("\n"));
    }
    // deno-lint-ignore no-console -- where to look
    console.error(`The nodes' logs: ${dir} (phases: ${phases.join(", ")})`);
    throw error;
  } finally {
    const children = [...orphans, ...nodes.flatMap((n) => descendants(n.pid))];
    await Promise.allSettled([...nodes, ...killed].map((n) => n[Symbol.asyncDispose]()));
    // No process is left behind: a killed node's task processes end with it (their stdin closes).
    for (const pid of children) {
      await until(() => `task process ${pid} gone`, () => !alive(pid) || undefined);
    }
    gone.close();
    await db?.end();
    await counter.stop();
    await pg.stop();
  }
});
