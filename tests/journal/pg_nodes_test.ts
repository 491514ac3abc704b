/**
 * Nodes sharing PostgreSQL, in-process: registries with real task processes over one database per
 * test, started by one PostgreSQL for the file.
 */
import assert from "node:assert/strict";
import { makeRegistry, registryParts, until } from "../helpers/registry.ts";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { PgJournal, type PgJournalOptions } from "../../src/journal/pg_journal.ts";
import type { TaskRegistry } from "../../src/tasks/task_registry.ts";
import { isTerminal } from "../../src/tasks/task_state.ts";
import postgres from "postgres";

let pg: TestPostgres;

async function node(
  url: string,
  id: string,
  env: Record<string, string> = {},
  options: Partial<PgJournalOptions> = {},
): Promise<TaskRegistry> {
  const journal = await PgJournal.open(url, {
    node: id,
    leaseMs: 10_000,
    renewMs: 1000,
    bufferBytes: 64 * 1024 * 1024,
    waitMs: 5000,
    maxAttempts: 3,
    ...options,
  });
  return makeRegistry({ KLYM_MAX_CONCURRENT: "2", ...env }, { journal });
}

const statusOf = (registry: TaskRegistry, id: string) => {
  try {
    return registry.get(id).state.status;
  } catch {
    return undefined;
  }
};

/** Polls `condition` as a client would (a process's exit emits no task change). */
async function polled(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Still not: ${condition}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const linesOf = (registry: TaskRegistry, id: string) =>
  registry.get(id).logs.read(0, 1000).lines.map((l) => `${l.seq} ${l.stream} ${l.text}`);

Deno.test("nodes sharing PostgreSQL", async (t) => {
  pg = await startPostgres();
  await t.step("a task started on one node runs once, and reads the same on another", async () => {
    const url = await pg.database();
    await using a = await node(url, "a");
    await using b = await node(url, "b", { KLYM_MAX_CONCURRENT: "1" });
    const task = a.start({ kind: "hello", prompt: "hi", params: { n: 1 } });
    await a.durable();
    await until(b, () => statusOf(b, task.id) === "succeeded");
    await until(a, () => statusOf(a, task.id) === "succeeded");
    const [ra, rb] = [a.get(task.id), b.get(task.id)];
    assert.deepEqual(rb.state, ra.state);
    assert.deepEqual(rb.progress, ra.progress);
    assert.deepEqual(rb.prompt, "hi");
    await until(b, () => linesOf(b, task.id).length === linesOf(a, task.id).length);
    assert.deepEqual(linesOf(b, task.id), linesOf(a, task.id));
    assert(linesOf(a, task.id).length >= 3);
    const sql = postgres(url, { max: 1 });
    const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM klym_task_events
      WHERE task = ${task.id} AND status = 'running'`;
    await sql.end();
    assert.deepEqual(row?.n, 1, "one run");
  });

  await t.step("each node runs within its slots and the cluster runs every task", async () => {
    const url = await pg.database();
    await using a = await node(url, "a", { KLYM_MAX_CONCURRENT: "1" });
    await using b = await node(url, "b", { KLYM_MAX_CONCURRENT: "1" });
    const ids = Array.from({ length: 6 }, () =>
      a.start({ kind: "sleep", params: { ms: 300, tick_ms: 100 } }).id);
    await a.durable();
    let most = 0;
    const off = [a, b].map((r) =>
      r.events.subscribe(() => most = Math.max(most, a.processCount, b.processCount))
    );
    for (const id of ids) await until(a, () => statusOf(a, id) === "succeeded", 30_000);
    off.forEach((f) => f());
    assert(most <= 1, `a node ran ${most} processes at once with one slot`);
    const nodes = new Set(ids.map((id) => a.get(id).node));
    assert.deepEqual(nodes, new Set(["a", "b"]), "both nodes took work");
  });

  await t.step("a cancel on another node is final before it answers and stops the process", async () => {
    const url = await pg.database();
    await using a = await node(url, "a");
    await using b = await node(url, "b");
    const spin = a.start({ kind: "spin" });
    await a.durable();
    const owns = (r: TaskRegistry) => r.pidOf(spin.id) !== undefined;
    await Promise.race([until(a, () => owns(a)), until(b, () => owns(b))]);
    const [owner, other] = owns(a) ? [a, b] : [b, a];
    await until(other, () => statusOf(other, spin.id) === "running");
    const started = performance.now();
    other.cancel(spin.id, "from the other node");
    await other.durable();
    assert.equal(other.get(spin.id).state.status, "cancelled");
    await polled(() => owner.pidOf(spin.id) === undefined && owner.processCount === 0);
    const gone = performance.now() - started;
    assert(gone < 1200, `the process took ${gone} ms to go`);
    assert.equal(owner.get(spin.id).state.status, "cancelled");
  });

  await pg.stop();
});
