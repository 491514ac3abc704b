/**
 * The acceptance run of nodes sharing PostgreSQL: a PostgreSQL of its own on loopback, three real
 * Klym nodes (each its own port and process), and grynya's memory server as the witness that
 * counts task starts (each run of `counted` creates one entity named after its task). 300 tasks,
 * some retryable; one node is killed with SIGKILL mid-run; 20 held tasks are cancelled through
 * another node than theirs; PostgreSQL is restarted once; the killed node is restarted. Sessions
 * of the 2025 era are forwarded to their node, or answered 404 once it is gone.
 */
import assert from "node:assert/strict";
import type { Client } from "@modelcontextprotocol/client";
import { call, type KlymProcess, startKlym, type Status } from "../helpers/klym_process.ts";
import { startPostgres } from "../helpers/postgres.ts";
import { RawMcp } from "../helpers/raw_mcp.ts";
import { freePort, startMemoryPeer } from "../peers/peers.ts";

const TOKEN = "acceptance-token";
const TASKS = 300;
const HELD = 20;
const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "interrupted"]);

/** Polls `check` until it returns a value (not `undefined`), as a client polls a status. */
async function eventually<T>(
  what: string | (() => string),
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 120_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new Error(`Still not: ${typeof what === "string" ? what : what()}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Whether process `pid` still exists (a zombie waiting to be reaped counts as gone). */
const alive = (pid: number) => {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
};

/** Every process under `pid` (Linux): a task's process may sit below a launcher of its own. */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const children = new Set<number>();
  try {
    // Children hang under the thread that spawned them, not always the main one.
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`).trim();
      for (const child of text.split(/\s+/).filter(Boolean)) children.add(Number(child));
    }
  } catch {
    return out; // Gone.
  }
  for (const child of children) out.push(child, ...descendants(child));
  return out;
}

const status = (client: Client, taskId: string) =>
  call<Status>(client, "check_task_status", { task_id: taskId, max_log_lines: 1000 });

/** Runs `fn` over `items`, `width` at a time. */
async function inBatches<T, R>(items: T[], width: number, fn: (item: T) => Promise<R>) {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) {
    out.push(...await Promise.all(items.slice(i, i + width).map(fn)));
  }
  return out;
}

Deno.test("three nodes on one PostgreSQL: a node killed, cancels across nodes, a database restart", async () => {
  const pg = await startPostgres();
  const memoryFile = Deno.makeTempFileSync({ suffix: ".jsonl" });
  const grynya = await startMemoryPeer({ transport: "http", memoryFile });
  const url = await pg.database();
  const ports = [freePort(), freePort(), freePort()];
  const env = (i: number) => ({
    KLYM_STATE: url,
    KLYM_NODE_ID: `n${i + 1}`,
    KLYM_NODE_URL: `http://127.0.0.1:${ports[i]}`,
    KLYM_AUTH_TOKEN: TOKEN,
    KLYM_GRYNYA_URL: grynya.url,
    KLYM_MAX_CONCURRENT: "4",
    KLYM_NODE_LEASE_MS: "2000",
    KLYM_NODE_RENEW_MS: "400",
    KLYM_LOG_LEVEL: "info",
  });
  const nodes: KlymProcess[] = await Promise.all(
    [0, 1, 2].map((i) => startKlym(env(i), { port: ports[i]! })),
  );
  const pids = nodes.map((n) => n.pid);
  /** The runs grynya saw, per task (a run writes one entity as it starts). */
  const startsOf = () => {
    const starts = new Map<string, number>();
    for (const line of Deno.readTextFileSync(memoryFile).split("\n")) {
      let name = "";
      try {
        name = JSON.parse(line).name;
      } catch {
        continue; // Empty, or being written.
      }
      const id = /^start (\S+) /.exec(name)?.[1];
      if (id) starts.set(id, (starts.get(id) ?? 0) + 1);
    }
    return starts;
  };
  const stopped: KlymProcess[] = [];
  const orphaned: number[] = [];
  try {
    const clients = await Promise.all(nodes.map((n) => n.connect()));

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

    // 300 tasks, started through every node: 20 early ones held until cancelled, every 5th
    // retryable.
    const isHeld = (i: number) => i % 3 === 1 && i < 3 * HELD;
    const specs = Array.from({ length: TASKS }, (_, i) => ({
      kind: i % 5 === 0 ? "counted_retryable" : "counted",
      params: isHeld(i) ? { hold: true } : { ms: 150 + (i % 4) * 50 },
    }));
    const ids = await inBatches(specs.map((s, i) => ({ s, i })), 30, async ({ s, i }) => {
      const started = await call<{ task_id: string }>(
        clients[i % 3]!,
        "start_async_agent_task",
        s,
      );
      return started.task_id;
    });
    const held = new Set(ids.filter((_, i) => isHeld(i)));
    assert.equal(held.size, HELD);
    const retryable = new Set(ids.filter((_, i) => specs[i]!.kind === "counted_retryable"));

    // Each held task is cancelled through the next node once it runs; its process goes at once.
    const cancelled: { id: string; goneMs: number }[] = [];
    const seen = new Map<string, string>();
    const tree = () => pids.map((p) => `${p}: ${descendants(p).join(",")}`).join("; ");
    await eventually(
      () => `every held task cancelled: ${[...seen.values()]} (${tree()})`,
      async () => {
        for (const id of held) {
          const s = await status(clients[0]!, id);
          seen.set(id, `${id} ${s.status} ${s.logs[0]?.text}`);
          const pid = Number(/^pid (\d+)$/.exec(s.logs[0]?.text ?? "")?.[1]);
          const owner = pid ? pids.findIndex((p) => descendants(p).includes(pid)) : -1;
          if (owner < 0) continue;
          const reply = await call<{ status: string }>(clients[(owner + 1) % 3]!, "cancel_task", {
            task_id: id,
          });
          const replied = performance.now();
          assert.equal(reply.status, "cancelled");
          await eventually(`process ${pid} gone`, () => alive(pid) ? undefined : true, 10_000, 10);
          cancelled.push({ id, goneMs: performance.now() - replied });
          held.delete(id);
        }
        return held.size === 0 ? true : undefined;
      },
    );
    for (const { id, goneMs } of cancelled) {
      assert(goneMs < 1200, `task ${id}'s process took ${goneMs} ms to go after the cancel`);
    }

    // Mid-run (a third of the tasks started), n3 dies with work of its own.
    await eventually(
      "a third of the tasks started",
      () => startsOf().size >= TASKS / 3 ? true : undefined,
    );
    const orphans = descendants(pids[2]!);
    nodes[2]!.signal("SIGKILL");
    await nodes[2]!.exited;
    stopped.push(nodes[2]!);
    orphaned.push(...orphans);
    // Its sessions are gone too: a request for one is answered 404, and clients open a new one.
    const afterKill = await via.post({ jsonrpc: "2.0", id: 2, method: "ping" });
    await afterKill.body?.cancel();
    assert.equal(afterKill.status, 404);

    // PostgreSQL restarts; the nodes go on, /healthz says what they see.
    await pg.halt();
    try {
      await eventually("n1 sees the database gone", async () => {
        const health = await (await fetch(`${nodes[0]!.url}/healthz`)).json();
        return health.ok === false ? true : undefined;
      }, 30_000);
    } finally {
      await pg.start();
    }
    await eventually("n1 sees the database back", async () => {
      const health = await (await fetch(`${nodes[0]!.url}/healthz`)).json();
      return health.ok === true ? true : undefined;
    }, 30_000);

    // n3 comes back under its id and port.
    nodes[2] = await startKlym(env(2), { port: ports[2]! });
    pids[2] = nodes[2].pid;
    clients[2] = await nodes[2].connect();

    // Every task ends; every node tells the same.
    const finals = await inBatches(ids, 20, (id) =>
      eventually(`task ${id} final`, async () => {
        const s = await status(clients[0]!, id);
        return FINAL.has(s.status) ? s : undefined;
      }));
    const starts = startsOf();
    for (const [i, id] of ids.entries()) {
      const runs = starts.get(id) ?? 0;
      if (!retryable.has(id)) assert(runs <= 1, `task ${id} ran ${runs} times`);
      else assert(runs <= 3, `retryable task ${id} ran ${runs} times (KLYM_MAX_ATTEMPTS 3)`);
      const final = finals[i]!;
      if (final.status === "succeeded") assert(runs >= 1, `task ${id} succeeded unseen`);
    }
    const lost = finals.filter((f) => f.error?.code === "node_lost");
    const counts: Record<string, number> = {};
    for (const f of finals) counts[f.status] = (counts[f.status] ?? 0) + 1;
    const again = [...retryable].filter((id) => (starts.get(id) ?? 0) > 1).length;
    // deno-lint-ignore no-console -- the run's figures, for the report
    console.log(
      `statuses ${JSON.stringify(counts)}, node_lost ${lost.length}, retryable run again ${again},`,
      `cancel to process gone (ms) ${cancelled.map((c) => Math.round(c.goneMs)).join(" ")}`,
    );
    assert(lost.length + again > 0, "the killed node ran nothing");
    assert(finals.some((f) => f.status === "succeeded"));
    assert.equal(finals.filter((f) => f.status === "cancelled").length >= cancelled.length, true);

    const view = (s: Status) =>
      JSON.stringify({
        status: s.status,
        error: s.error?.code,
        result: s.result,
        logs: s.logs.map((l) => `${l.seq} ${l.stream} ${l.text}`),
      });
    await inBatches(ids, 10, async (id) => {
      const seen = await Promise.all(clients.map((c) => status(c, id)));
      assert.equal(view(seen[1]!), view(seen[0]!), `task ${id}: n2 differs from n1`);
      assert.equal(view(seen[2]!), view(seen[0]!), `task ${id}: n3 differs from n1`);
    });

    // No node exited; what they ran is gone with them below.
    for (const node of nodes) {
      const exited = await Promise.race([node.exited, Promise.resolve(undefined)]);
      assert.equal(exited, undefined, "a node exited");
    }
    await own.close().catch(() => {});
  } finally {
    const children = [...orphaned, ...pids.flatMap((pid) => descendants(pid))];
    await Promise.allSettled([...nodes, ...stopped].map((n) => n[Symbol.asyncDispose]()));
    for (const pid of children) {
      await eventually(`task process ${pid} gone`, () => alive(pid) ? undefined : true, 15_000);
    }
    await grynya.stop();
    await pg.stop();
    await Deno.remove(memoryFile).catch(() => {});
  }
});
