/**
 * Nodes sharing PostgreSQL, in-process: registries with real task processes over one database per
 * test, started by one PostgreSQL for the file.
 */
import assert from "node:assert/strict";
import { makeRegistry, registryParts, until } from "../helpers/registry.ts";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import {
  idleInTransactionMs,
  PgJournal,
  type PgJournalOptions,
} from "../../src/journal/pg_journal.ts";
import type { TaskRegistry } from "../../src/tasks/task_registry.ts";
import postgres from "postgres";
import { TcpRelay } from "../helpers/tcp.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";
import type { Sampler } from "../../src/llm/sampling.ts";

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
async function polled(condition: () => boolean, timeoutMs = PATIENCE_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Still not: ${condition}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Nodes "a" and "b" renewing their leases a minute apart (only a notification brings a change
 * in time), one of them running a long `sleep` task logging every `tickMs`.
 */
async function twoNodesRunning(tickMs: number) {
  const url = await pg.database();
  const slow = { leaseMs: 120_000, renewMs: 60_000 };
  const a = await node(url, "a", {}, slow);
  const b = await node(url, "b", {}, slow);
  const stop = async () => void await Promise.all([a.shutdown(), b.shutdown()]);
  try {
    const task = a.start({ kind: "sleep", params: { ms: 120_000, tick_ms: tickMs } });
    await a.durable();
    const owns = (r: TaskRegistry) => r.pidOf(task.id) !== undefined;
    await polled(() => owns(a) || owns(b));
    const [owner, other] = owns(a) ? [a, b] : [b, a];
    // The other node has heard of it running (its notification) before any step goes on.
    await polled(() => statusOf(other, task.id) === "running");
    return { url, task, owner, other, [Symbol.asyncDispose]: stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Nodes "a" and "b" on a short lease, each reaching PostgreSQL through a relay of its own (the
 * direct URL for a node not in `relayed`), and the node rows as an admin reads them.
 */
async function relayedPair(relayed: readonly ("a" | "b")[] = ["a", "b"]) {
  const url = await pg.database();
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const lease = { leaseMs: 4000, renewMs: 200, waitMs: 1000 };
  const [ra, rb] = [new TcpRelay(pg.port), new TcpRelay(pg.port)];
  const via = (id: "a" | "b", relay: TcpRelay) =>
    relayed.includes(id) ? url.replace(`:${pg.port}/`, `:${relay.port}/`) : url;
  const a = await node(via("a", ra), "a", {}, lease);
  const b = await node(via("b", rb), "b", {}, lease);
  const row = async (id: string) => {
    const [r] = await sql<{ at: number; alive: boolean }[]>`
      SELECT (extract(epoch FROM renewed_at) * 1000)::float8 AS at, alive
      FROM klym_nodes WHERE id = ${id}`;
    return r!;
  };
  return {
    a,
    b,
    ra,
    rb,
    sql,
    lease,
    row,
    [Symbol.asyncDispose]: async () => {
      ra.resume();
      rb.resume();
      await a.shutdown();
      await b.shutdown();
      await ra.close();
      await rb.close();
      await sql.end();
    },
  };
}

/** Asks `ask` again and again until `done` holds of its answer; returns that answer. */
async function asked<T>(ask: () => Promise<T>, done: (answer: T) => boolean): Promise<T> {
  const deadline = Date.now() + PATIENCE_MS;
  for (;;) {
    const answer = await ask();
    if (done(answer)) return answer;
    if (Date.now() > deadline) throw new Error(`Still not: ${done} (${JSON.stringify(answer)})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
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
    const ids = Array.from(
      { length: 6 },
      () => a.start({ kind: "sleep", params: { ms: 300, tick_ms: 100 } }).id,
    );
    await a.durable();
    let most = 0;
    const off = [a, b].map((r) =>
      r.events.subscribe(() => most = Math.max(most, a.processCount, b.processCount))
    );
    for (const id of ids) await until(a, () => statusOf(a, id) === "succeeded");
    off.forEach((f) => f());
    assert(most <= 1, `a node ran ${most} processes at once with one slot`);
    const nodes = new Set(ids.map((id) => a.get(id).node));
    assert.deepEqual(nodes, new Set(["a", "b"]), "both nodes took work");
  });

  await t.step(
    "a cancel on another node is final before it answers and stops the process",
    async () => {
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
      // Told at once, not when the owner's lease would have run out (10 s): bench/ has the figure.
      const gone = performance.now() - started;
      assert(gone < 8000, `the process took ${gone} ms to go`);
      assert.equal(owner.get(spin.id).state.status, "cancelled");
    },
  );

  await t.step(
    "a task asking its client's own model runs on the node holding that client",
    async () => {
      const url = await pg.database();
      await using a = await node(url, "a", { KLYM_MAX_CONCURRENT: "1" });
      await using b = await node(url, "b", { KLYM_MAX_CONCURRENT: "1" });
      // Both nodes busy: one spin each.
      const spins = [a.start({ kind: "spin" }), a.start({ kind: "spin" })];
      await a.durable();
      await polled(() => spins.every((s) => statusOf(a, s.id) === "running"));
      const spinOf = (r: TaskRegistry) => spins.find((s) => r.pidOf(s.id) !== undefined)!;
      await polled(() => spinOf(a) !== undefined && spinOf(b) !== undefined);
      const asked: string[] = [];
      const sampler: Sampler = Object.assign(
        (request: { messages: readonly { text?: string }[] }) => {
          asked.push(String(request.messages[0]?.text));
          return Promise.resolve({
            model: "client",
            text: "from the client",
            toolCalls: [],
            usage: { inputTokens: 1, outputTokens: 1 },
            finishReason: "stop",
          });
        },
        { tools: false },
      ) as unknown as Sampler;
      const pinned = a.start({ kind: "llm_once", prompt: "which node?", sampler });
      const plain = a.start({ kind: "hello" });
      await a.durable();
      // b frees its slot: it passes over the older pinned task and takes the plain one.
      b.cancel(spinOf(b).id);
      await b.durable();
      await until(a, () => statusOf(a, plain.id) === "succeeded", PATIENCE_MS);
      assert.equal(a.get(plain.id).node, "b");
      assert.equal(statusOf(a, pinned.id), "queued");
      assert.equal(statusOf(b, pinned.id), "queued");
      // a frees its slot: the pinned task runs there, with the client's model.
      a.cancel(spinOf(a).id);
      await a.durable();
      await until(b, () => statusOf(b, pinned.id) === "succeeded", PATIENCE_MS);
      assert.equal(b.get(pinned.id).node, "a");
      assert.deepEqual(asked, ["which node?"]);
      const state = a.get(pinned.id).state;
      assert("resultJson" in state && JSON.parse(state.resultJson).text === "from the client");
    },
  );

  await t.step(
    "a lost node's tasks: interrupted (node_lost) or run again when retryable; its late result changes nothing",
    async () => {
      const url = await pg.database();
      // Node a reaches PostgreSQL through a relay the test cuts: a partition.
      const relay = new TcpRelay(pg.port);
      const lease = { leaseMs: 1000, renewMs: 200, waitMs: 1000 };
      const a = await node(url.replace(`:${pg.port}/`, `:${relay.port}/`), "a", {}, lease);
      const plain = a.start({ kind: "sleep", params: { ms: 4000, tick_ms: 200 } });
      const again = a.start({ kind: "retry_spin" });
      assert.equal(a.get(again.id).retryable, true);
      await a.durable();
      await polled(() => a.pidOf(plain.id) !== undefined && a.pidOf(again.id) !== undefined);
      await using b = await node(url, "b", {}, lease);
      await until(b, () => statusOf(b, plain.id) === "running");
      const cut = performance.now();
      relay.cut();
      await until(b, () => statusOf(b, plain.id) === "interrupted", 15_000);
      const lostAfter = performance.now() - cut;
      assert(lostAfter < 15_000, `node_lost after ${lostAfter} ms`);
      const lost = b.get(plain.id).state;
      assert("error" in lost && lost.error.code === "node_lost", JSON.stringify(lost));
      // The retryable one runs again on b, as its second attempt.
      await until(
        b,
        () => b.get(again.id).node === "b" && b.get(again.id).attempt === 2,
        PATIENCE_MS,
      );
      await polled(() => b.pidOf(again.id) !== undefined);
      // a goes on meanwhile: the sleep ends there and its result waits for the database.
      // Task processes run at the lowest priority: on a loaded machine a 4 s sleep can take long.
      await polled(() => a.get(plain.id).state.status === "succeeded", PATIENCE_MS);
      relay.heal();
      // Back in touch, a's late result is fenced out and a takes the store's word.
      await until(a, () => statusOf(a, plain.id) === "interrupted", PATIENCE_MS);
      await polled(() => a.pidOf(again.id) === undefined, PATIENCE_MS);
      assert.equal(b.get(plain.id).state.status, "interrupted");
      const sql = postgres(url, { max: 1 });
      const rows = await sql<{ status: string; node: string; attempt: number }[]>`
      SELECT status, node, attempt FROM klym_task_events WHERE task = ${plain.id} ORDER BY time`;
      await sql.end();
      assert.deepEqual(rows.map((r) => r.status), ["queued", "running", "interrupted"]);
      b.cancel(again.id);
      await b.durable();
      await a.shutdown();
      await relay.close();
    },
  );

  await t.step(
    "after an outage of every node, a renewal answered late judges no node lost for a whole lease",
    async () => {
      // Each node reaches PostgreSQL through a relay the test pauses: a partition that keeps the
      // connections, so that a renewal sent during it is answered after it, late.
      await using pair = await relayedPair();
      const { ra, rb, lease, row } = pair;
      // Both have renewed on time for a whole lease: each may judge the other.
      await new Promise((resolve) => setTimeout(resolve, lease.leaseMs + 500));
      assert.equal((await row("b")).alive, true);
      ra.pause();
      rb.pause();
      // The outage outlasts a lease: every renewal sent during it is answered a lease late.
      await new Promise((resolve) => setTimeout(resolve, lease.leaseMs + 1000));
      const before = (await row("a")).at;
      ra.resume();
      // a's late renewal, then one more: the late one has run to its end (reaping included).
      const seen = new Set<number>();
      for (const deadline = Date.now() + PATIENCE_MS; seen.size < 2;) {
        if (Date.now() > deadline) throw new Error("a did not renew twice after the outage");
        const at = (await row("a")).at;
        if (at > before) seen.add(at);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // b has been silent for more than a lease, but a has been back for less than one: a
      // leaves b be, and b, back in time, is not lost.
      assert.equal((await row("b")).alive, true, "a judged b lost as soon as it was back");
      rb.resume();
      const back = (await row("b")).at;
      for (const deadline = Date.now() + PATIENCE_MS;;) {
        if ((await row("b")).at > back) break;
        if (Date.now() > deadline) throw new Error("b did not renew after the outage");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal((await row("b")).alive, true);
    },
  );

  await t.step(
    "a renewal whose later steps came late judges no node lost for a whole lease",
    async () => {
      await using pair = await relayedPair();
      const { ra, rb, lease, row } = pair;
      // Both have renewed on time for a whole lease: each may judge the other.
      await new Promise((resolve) => setTimeout(resolve, lease.leaseMs + 500));
      assert.equal((await row("b")).alive, true);
      // a's next renewal writes its lease, then its read of the model spend is held; b is cut
      // off alike. The outage outlasts a lease.
      ra.holdNextSending("FROM klym_model_spend");
      rb.pause();
      await asked(() => Promise.resolve(ra.held), (ports) => ports.length === 1);
      await new Promise((resolve) => setTimeout(resolve, lease.leaseMs + 1000));
      const before = (await row("a")).at;
      ra.release();
      // The held renewal runs to its end (reaping included), then one more.
      const seen = new Set<number>();
      await asked(async () => {
        const at = (await row("a")).at;
        if (at > before) seen.add(at);
        return seen.size;
      }, (count) => count >= 2);
      assert.equal((await row("b")).alive, true, "a judged b lost as soon as its renewal went on");
    },
  );

  await t.step(
    "a node cut off inside a transaction holding the cluster's lock stalls the others for half a lease at most",
    async () => {
      await using pair = await relayedPair(["b"]);
      const { rb, sql, row } = pair;
      // b's next commit (each renewal ends a transaction under the cluster's lock) never
      // reaches PostgreSQL: b holds the lock, and a's next renewal waits for it.
      rb.holdNextSending("commit");
      await asked(() => Promise.resolve(rb.held), (ports) => ports.length === 1);
      const [held] = await asked(
        () =>
          sql<{ pid: number }[]>`SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l
            ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
            WHERE a.client_port = ${rb.held[0]!} AND a.state = 'idle in transaction'`,
        (rows) => rows.length === 1,
      );
      // PostgreSQL ends b's session after half a lease; a renews on, three times more.
      const seen = new Set<number>();
      await asked(async () => seen.add((await row("a")).at).size, (count) => count > 3);
      // b's session held in its transaction was ended (its process exits just after its locks go).
      await asked(
        async () => (await sql`SELECT 1 FROM pg_stat_activity WHERE pid = ${held!.pid}`).length,
        (rows) => rows === 0,
      );
    },
  );

  await t.step(
    "a node held inside a transaction that takes no lock (a write) keeps its session and its write",
    async () => {
      await using pair = await relayedPair(["b"]);
      const { b, rb, sql, lease } = pair;
      // b's admission of a task is held after its first statement: its session sits idle inside
      // the write's transaction, as when the node stalls there. The task's row is not committed,
      // so no claim (under the lock) can come first.
      rb.holdNextSending("INSERT INTO klym_task_events");
      const task = b.start({ kind: "hello", prompt: "hi", params: { n: 1 } });
      await asked(() => Promise.resolve(rb.held), (ports) => ports.length === 1);
      const bound = idleInTransactionMs(lease.leaseMs);
      const idle = () =>
        sql<{ ms: number; locks: number }[]>`
          SELECT (extract(epoch FROM now() - a.state_change) * 1000)::float8 AS ms,
            (SELECT count(*)::int FROM pg_locks l
              WHERE l.pid = a.pid AND l.locktype = 'advisory') AS locks
          FROM pg_stat_activity a
          WHERE a.client_port = ${rb.held[0]!} AND a.state = 'idle in transaction'`;
      // By PostgreSQL's own clock, twice the lock's bound passes with the session still there.
      const [still] = await asked(idle, (rows) => rows.length === 0 || rows[0]!.ms > 2 * bound);
      assert.ok(still, `b's session idle in its write was ended (bound ${bound} ms)`);
      assert.equal(still.locks, 0, "the held transaction took no lock");
      rb.release();
      await b.durable();
      const [row] = await sql<{ id: string }[]>`SELECT id FROM klym_tasks WHERE id = ${task.id}`;
      assert.equal(row?.id, task.id);
    },
  );

  await t.step("model spend added on two nodes reads the same on both", async () => {
    const url = await pg.database();
    const open = (id: string) =>
      PgJournal.open(url, {
        node: id,
        leaseMs: 10_000,
        renewMs: 100,
        bufferBytes: 1024 * 1024,
        waitMs: 5000,
        maxAttempts: 1,
      });
    const journalA = await open("a");
    await using a = makeRegistry({}, { journal: journalA });
    const journalB = await open("b");
    await using b = makeRegistry({}, { journal: journalB });
    const hour = Date.now() - Date.now() % 3_600_000;
    const spend = (owner: string, calls: number, inputTokens: number) => ({
      hour,
      owner,
      model: "m",
      calls,
      refusals: 0,
      inputTokens,
      outputTokens: 1,
    });
    journalA.spent(spend("alice", 1, 10));
    journalB.spent(spend("alice", 2, 20));
    journalB.spent(spend("bob", 1, 5));
    await a.durable();
    await b.durable();
    const want = JSON.stringify([
      { ...spend("alice", 3, 30), outputTokens: 2, hour: 0 },
      { ...spend("bob", 1, 5), hour: 0 },
    ]);
    // Each node reads the other's spend at its next renewal.
    await polled(() =>
      JSON.stringify(journalA.readSpend(0)) === want &&
      JSON.stringify(journalB.readSpend(0)) === want
    );
    assert.deepEqual(journalA.readSpend(0, "bob").map((s) => s.owner), ["bob"]);
    journalA.forgetSpend(hour + 1);
    await a.durable();
    const later = await open("c");
    try {
      assert.deepEqual(later.readSpend(0), [], "forgotten in the shared store too");
    } finally {
      await later.close();
    }
  });

  await t.step("a restarted node settles its own running tasks, not another node's", async () => {
    const url = await pg.database();
    const relay = new TcpRelay(pg.port);
    const a = await node(url.replace(`:${pg.port}/`, `:${relay.port}/`), "a", {
      KLYM_MAX_CONCURRENT: "1",
    });
    await using b = await node(url, "b", { KLYM_MAX_CONCURRENT: "1" });
    const one = a.start({ kind: "spin" });
    const two = a.start({ kind: "spin" });
    await a.durable();
    await polled(() =>
      statusOf(a, one.id) === "running" && statusOf(a, two.id) === "running" &&
      statusOf(b, one.id) === "running" && statusOf(b, two.id) === "running"
    );
    const mine = a.pidOf(one.id) !== undefined ? one : two;
    const theirs = mine === one ? two : one;
    // a dies (cut off for good) and starts again under the same id.
    relay.cut();
    await using a2 = await node(url, "a");
    const restarted = a2.get(mine.id).state;
    assert(
      "error" in restarted && restarted.error.code === "interrupted",
      JSON.stringify(restarted),
    );
    assert.equal(a2.get(theirs.id).state.status, "running");
    await until(b, () => statusOf(b, mine.id) === "interrupted");
    assert.equal(b.get(theirs.id).state.status, "running");
    b.cancel(theirs.id);
    await b.durable();
    relay.heal();
    await a.shutdown();
    await relay.close();
  });

  await t.step(
    "a lost node back in touch stops its run of a task queued again; that run's end changes nothing there",
    async () => {
      const url = await pg.database();
      const relay = new TcpRelay(pg.port);
      const lease = { leaseMs: 1000, renewMs: 200, waitMs: 1000 };
      const one = { KLYM_MAX_CONCURRENT: "1" };
      const a = await node(url.replace(`:${pg.port}/`, `:${relay.port}/`), "a", one, lease);
      try {
        const task = a.start({ kind: "sleep_retryable", params: { ms: 120_000, tick_ms: 50 } });
        await a.durable();
        await polled(() => a.pidOf(task.id) !== undefined);
        const first = a.pidOf(task.id)!;
        // b's one slot is busy: the lost node's task waits there, queued again.
        await using b = await node(url, "b", one, lease);
        const spin = b.start({ kind: "spin" });
        await b.durable();
        await polled(() => b.pidOf(spin.id) !== undefined);
        relay.cut();
        await until(b, () => statusOf(b, task.id) === "queued", 15_000);
        relay.heal();
        // a hears it queued and stops its run: the run's failure and its exit are not the task's.
        await polled(() => a.pidOf(task.id) !== first, PATIENCE_MS);
        await until(a, () => a.get(task.id).attempt === 2 && a.pidOf(task.id) !== undefined);
        assert.equal(statusOf(a, task.id), "running");
        assert.equal(a.get(task.id).node, "a");
        for (const id of [task.id, spin.id]) b.cancel(id);
        await b.durable();
        await until(a, () => statusOf(a, task.id) === "cancelled");
      } finally {
        await a.shutdown();
        await relay.close();
      }
    },
  );
  await t.step(
    "a cancel made elsewhere stops the process at once while the owner's log lines wait to be written",
    async () => {
      await using pair = await twoNodesRunning(20);
      const { url, task, owner, other } = pair;
      const lock = postgres(url, { max: 1, onnotice: () => {} });
      try {
        await lock.begin(async (sql) => {
          // The owner's writes of its task's lines wait behind this lock, as behind a busy
          // database; its reads of the task's row do not.
          await sql`LOCK TABLE klym_logs IN EXCLUSIVE MODE`;
          await polled(() => (registryParts(owner).journal.health().waiting ?? 0) > 0);
          other.cancel(task.id, "from the other node");
          await other.durable();
          const answered = performance.now();
          await polled(() => owner.pidOf(task.id) === undefined);
          const gone = performance.now() - answered;
          assert(
            gone < 5000,
            `the owner stopped the cancelled process ${gone} ms after the answer`,
          );
          assert.equal(owner.get(task.id).state.status, "cancelled");
        });
      } finally {
        await lock.end();
      }
    },
  );

  await t.step(
    "the client's socket errors that nothing awaits do not end the node; others are left alone",
    async () => {
      const url = await pg.database();
      await using a = await node(url, "a");
      const error = (message: string, fields: Record<string, string>, frames: string[]) =>
        Object.assign(new Error(message), {
          ...fields,
          stack: [`Error: ${message}`, ...frames.map((f) => `    at ${f}`)].join("\n"),
        });
      const cases = [
        // The client's write timer, on a socket PostgreSQL has ended while it shuts down.
        {
          held: true,
          error: error("This socket has been ended by the other party", { code: "EPIPE" }, [
            "Socket._writeAfterFIN [as write] (ext:deno_node/net.ts:1:10175)",
            "Immediate.nextWrite (file:///cache/npm/postgres/3.4.9/src/connection.js:255:22)",
          ]),
        },
        // A connection attempt refused while PostgreSQL is down.
        {
          held: true,
          error: error(
            "connect ECONNREFUSED 127.0.0.1:5432",
            { code: "ECONNREFUSED", syscall: "connect" },
            [
              "_afterConnectImpl (ext:deno_node/net.ts:1:6347)",
              "TCPConnectWrap._afterConnect [as oncomplete] (ext:deno_node/net.ts:1:5448)",
            ],
          ),
        },
        // Anything else is not the client's to hold back.
        {
          held: false,
          error: error("connect ECONNREFUSED 127.0.0.1:5432", { code: "ECONNREFUSED" }, [
            "someone (file:///elsewhere.ts:1:1)",
          ]),
        },
      ];
      for (const { held, error } of cases) {
        const seen = Promise.withResolvers<boolean>();
        const after = (event: PromiseRejectionEvent) => {
          seen.resolve(event.defaultPrevented);
          event.preventDefault(); // The test's own: the last case must not end the test run.
        };
        globalThis.addEventListener("unhandledrejection", after);
        try {
          void Promise.reject(error);
          assert.equal(await seen.promise, held, `${error.message} held back: ${held}`);
        } finally {
          globalThis.removeEventListener("unhandledrejection", after);
        }
      }
      assert.equal(a.start({ kind: "hello" }).state.status, "queued");
      await a.durable();
    },
  );

  await t.step(
    "a node whose listener was cut reads back what it missed, however new the rows it read meanwhile",
    async () => {
      const url = await pg.database();
      const slow = { leaseMs: 120_000, renewMs: 60_000 };
      await using a = await node(url, "a", { KLYM_MAX_CONCURRENT: "1" }, slow);
      await using v = await node(url, "v", { KLYM_MAX_CONCURRENT: "1" }, slow);
      // Both slots held, so the two tasks below stay queued.
      for (let i = 0; i < 2; i++) a.start({ kind: "sleep", params: { ms: 120_000 } });
      await a.durable();
      await polled(() => a.processCount === 1 && v.processCount === 1);
      const missed = a.start({ kind: "hello" });
      const seen = a.start({ kind: "hello" });
      await a.durable();
      await polled(() => statusOf(v, missed.id) === "queued" && statusOf(v, seen.id) === "queued");
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      try {
        // Another node cancels `missed`, and its notification is lost (none is sent) …
        const error = JSON.stringify({ code: "cancelled", message: "cancelled elsewhere" });
        await sql`UPDATE klym_tasks SET status = 'cancelled', finished_at = ${Date.now()},
          error = ${error}, rev = nextval('klym_rev') WHERE id = ${missed.id}`;
        // … then, 100 changes later, cancels `seen`, which `v` hears of: the newest row it read
        // is far past `missed`'s change.
        await sql`SELECT setval('klym_rev', (SELECT last_value FROM klym_rev) + 100)`;
        await sql`UPDATE klym_tasks SET status = 'cancelled', finished_at = ${Date.now()},
          error = ${error}, rev = nextval('klym_rev') WHERE id = ${seen.id}`;
        await sql`SELECT pg_notify('klym', ${JSON.stringify({ n: "x", t: "t", id: seen.id })})`;
        await polled(() => statusOf(v, seen.id) === "cancelled");
        assert.equal(statusOf(v, missed.id), "queued", "nothing told v of `missed` yet");
        // v's listener is cut: once it listens again, it reads back what it may have missed.
        const [cut] = await sql<{ n: number }[]>`SELECT count(pg_terminate_backend(pid))::int AS n
          FROM pg_stat_activity WHERE application_name LIKE 'klym-listen % v'`;
        assert.equal(cut?.n, 1, "v's listener");
      } finally {
        await sql.end();
      }
      await polled(() => statusOf(v, missed.id) === "cancelled");
    },
  );

  await t.step(
    "a node whose listener goes deaf (its connection held without a word) listens anew and reads back what it missed",
    async () => {
      const url = await pg.database();
      const relay = new TcpRelay(pg.port);
      // A beat at each renewal, a lease no node outlives here.
      const beats = { leaseMs: 120_000, renewMs: 200 };
      const one = { KLYM_MAX_CONCURRENT: "1" };
      const a = await node(url, "a", one, beats);
      const v = await node(url.replace(`:${pg.port}/`, `:${relay.port}/`), "v", one, beats);
      const admin = postgres(url, { max: 1, onnotice: () => {} });
      try {
        // Both slots held, so the task below stays queued: only v's listener tells it of a change.
        for (let i = 0; i < 2; i++) a.start({ kind: "sleep", params: { ms: 120_000 } });
        await a.durable();
        await polled(() => a.processCount === 1 && v.processCount === 1);
        const missed = a.start({ kind: "hello" });
        await a.durable();
        await polled(() => statusOf(v, missed.id) === "queued");
        const listeners = async () =>
          (await admin<{ port: number }[]>`SELECT client_port AS port FROM pg_stat_activity
            WHERE application_name LIKE 'klym-listen % v'`).map((l) => l.port);
        const [deaf, ...others] = await listeners();
        assert(deaf !== undefined && others.length === 0, "one listener of v");
        relay.hold(deaf);
        a.cancel(missed.id);
        await a.durable();
        await polled(() => statusOf(v, missed.id) === "cancelled");
        // v listens on a new connection, and the held one is ended in PostgreSQL too.
        const [now] = await asked(listeners, (ports) => ports.length === 1 && ports[0] !== deaf);
        // The new listener hears v's beats: ten renewals later it is still the one, and a change
        // made elsewhere (to a task v does not run, so only its listener tells it) reaches v.
        const renewals = new Set<number>();
        await asked(async () => {
          const [row] = await admin<{ at: number }[]>`SELECT extract(epoch FROM renewed_at)::float8
            AS at FROM klym_nodes WHERE id = 'v'`;
          if (row) renewals.add(row.at);
          return renewals.size;
        }, (count) => count > 10);
        const later = a.start({ kind: "hello" });
        await a.durable();
        await polled(() => statusOf(v, later.id) === "queued");
        a.cancel(later.id);
        await polled(() => statusOf(v, later.id) === "cancelled");
        assert.deepEqual(await listeners(), [now], "still the same listener");
      } finally {
        await admin.end();
        await Promise.all([a.shutdown(), v.shutdown()]);
        await relay.close();
      }
    },
  );

  await t.step(
    "a listener whose LISTEN is never answered is made anew after twice KLYM_SHARED_WAIT_MS",
    async () => {
      const url = await pg.database();
      const relay = new TcpRelay(pg.port);
      relay.holdNextSending('listen "klym"');
      const one = { KLYM_MAX_CONCURRENT: "1" };
      const a = await node(url, "a", one, { leaseMs: 120_000, renewMs: 60_000 });
      const v = await node(url.replace(`:${pg.port}/`, `:${relay.port}/`), "v", one, {
        leaseMs: 120_000,
        renewMs: 200,
        waitMs: 1000,
      });
      try {
        // Both slots held, so the task below stays queued: only v's listener tells it of it.
        for (let i = 0; i < 2; i++) a.start({ kind: "sleep", params: { ms: 120_000 } });
        await a.durable();
        await polled(() => a.processCount === 1 && v.processCount === 1);
        const late = a.start({ kind: "hello" });
        a.cancel(late.id);
        await a.durable();
        await polled(() => statusOf(v, late.id) === "cancelled");
      } finally {
        await Promise.all([a.shutdown(), v.shutdown()]);
        await relay.close();
      }
    },
  );

  await t.step(
    "a node whose connections are cut while PostgreSQL runs stays reachable and admits tasks",
    async () => {
      const url = await pg.database();
      await using a = await node(url, "a");
      a.start({ kind: "hello" });
      await a.durable();
      const admin = postgres(url, { max: 1, onnotice: () => {} });
      try {
        // As a restart leaves them, or an operator's pg_terminate_backend: the next query on
        // each fails, and is tried again on a new connection.
        await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()`;
      } finally {
        await admin.end();
      }
      let unreachable = 0;
      const watch = setInterval(() => {
        if (!registryParts(a).journal.health().reachable) unreachable++;
      }, 1);
      try {
        for (let i = 0; i < 4; i++) {
          assert.equal(a.start({ kind: "hello" }).state.status, "queued");
          await a.durable();
        }
      } finally {
        clearInterval(watch);
      }
      assert.equal(unreachable, 0, "PostgreSQL was said unreachable while it ran");
    },
  );

  await t.step(
    "after a PostgreSQL outage a node hears a cancel made elsewhere at once, not at its renewal",
    async () => {
      await using pair = await twoNodesRunning(1000);
      const { task, owner, other } = pair;
      await pg.halt();
      try {
        // The outage itself (not a wait for an event): 8 s is long enough for the client's own
        // reconnection backoff to have grown past 10 s, when no bound of Klym's holds it.
        await new Promise((resolve) => setTimeout(resolve, 8000));
      } finally {
        await pg.start();
      }
      // Both nodes reach PostgreSQL again before the cancel (a loaded machine may take seconds).
      for (const r of [owner, other]) {
        await polled(() => registryParts(r).journal.health().reachable === true, PATIENCE_MS);
      }
      other.cancel(task.id, "from the other node, after the outage");
      await other.durable();
      const answered = performance.now();
      await polled(() => owner.pidOf(task.id) === undefined);
      const gone = performance.now() - answered;
      // Reconnections within MAX_BACKOFF_MS (1 s), the process killed after the grace (0.5 s);
      // the renewal that would otherwise find the cancel is 60 s away.
      assert(gone < 30_000, `the owner stopped the cancelled process ${gone} ms after the answer`);
      assert.equal(owner.get(task.id).state.status, "cancelled");
    },
  );

  await t.step(
    "while PostgreSQL is down tasks go on, start is refused and /healthz says so",
    async () => {
      const url = await pg.database();
      // The writes that waited are confirmed within the helper's KLYM_SHARED_WAIT_MS (5 s): a
      // loaded machine drains them after the restart slower than 1 s.
      await using a = await node(url, "a", {}, { leaseMs: 2000, renewMs: 200 });
      const task = a.start({ kind: "sleep", params: { ms: 1500, tick_ms: 100 } });
      await a.durable();
      await polled(() => a.pidOf(task.id) !== undefined);
      await pg.halt();
      try {
        await polled(() => registryParts(a).journal.health().reachable === false);
        const health = registryParts(a).journal.health();
        assert.equal(health.ok, false);
        assert.match(String(health.error), /does not answer/);
        assert.throws(() => a.start({ kind: "hello" }), (error: Error & { code?: string }) => {
          assert.equal(error.code, "STORE_UNAVAILABLE");
          assert.match(error.message, /Cannot start task: PostgreSQL .* does not answer/);
          return true;
        });
        // The task goes on without the database.
        await polled(() => a.get(task.id).state.status === "succeeded", PATIENCE_MS);
      } finally {
        await pg.start();
      }
      await polled(() => registryParts(a).journal.health().reachable === true, PATIENCE_MS);
      // The writes that waited all land: on a loaded machine that can take longer than the wait
      // KLYM_SHARED_WAIT_MS gives one write, so the test waits for the queue itself.
      await polled(() => registryParts(a).journal.health().waiting === 0, PATIENCE_MS);
      assert.equal(a.start({ kind: "hello" }).state.status, "queued");
      await a.durable();
    },
  );

  await t.step(
    "a claim committed whose answer the node never heard is undone by its next claim or renewal, and the task runs once",
    async () => {
      // Read back (a notification) or not, the node holds the task queued or running elsewhere:
      // without it, its next claim finds the task; with it, nothing is left to claim but the
      // renewal looks.
      for (const told of [false, true]) {
        const url = await pg.database();
        await using a = await node(url, "a", { KLYM_MAX_CONCURRENT: "1" });
        const busy = a.start({ kind: "spin" });
        await a.durable();
        await polled(() => a.pidOf(busy.id) !== undefined);
        const task = a.start({ kind: "hello", prompt: "hi", params: { n: 1 } });
        await a.durable();
        // What a claim of a's leaves when its connection is cut as it answers: committed, unheard.
        const sql = postgres(url, { max: 1, onnotice: () => {} });
        try {
          const claimed = await sql`
            UPDATE klym_tasks SET status = 'running', node = 'a', attempt = attempt + 1
            WHERE id = ${task.id} AND status = 'queued' RETURNING id`;
          assert.equal(claimed.length, 1);
          if (told) {
            await sql`SELECT pg_notify('klym', ${JSON.stringify({ n: "x", t: "t", id: task.id })})`;
            // a reads the row back as running, unless its renewal put the claim back first (on a
            // loaded machine it can): then the row is queued again, as when a was not told.
            await asked(
              async () =>
                statusOf(a, task.id) === "running" ||
                (await sql`SELECT status FROM klym_tasks WHERE id = ${task.id}`)[0]?.status ===
                  "queued",
              (settled) => settled,
            );
          }
          a.cancel(busy.id); // its slot is free
          await until(a, () => statusOf(a, task.id) === "succeeded");
          // Its end is written behind the node's answer: read once it has landed.
          let row: { attempt: number; node: string; status: string } | undefined;
          const deadline = Date.now() + PATIENCE_MS;
          while (row?.status !== "succeeded") {
            assert(Date.now() < deadline, `the task's end never written: ${JSON.stringify(row)}`);
            if (row) await new Promise((resolve) => setTimeout(resolve, 50));
            [row] = await sql<{ attempt: number; node: string; status: string }[]>`
              SELECT attempt, node, status FROM klym_tasks WHERE id = ${task.id}`;
          }
          assert.deepEqual(
            row,
            { attempt: 1, node: "a", status: "succeeded" },
            `told ${told}: the unheard claim is not counted`,
          );
          const events = await sql<{ status: string }[]>`
            SELECT status FROM klym_task_events WHERE task = ${task.id}`;
          // Admitted, put back (the unheard claim wrote no event), run, ended.
          assert.deepEqual(
            events.map((e) => e.status).sort(),
            ["queued", "queued", "running", "succeeded"],
            `told ${told}`,
          );
        } finally {
          await sql.end();
        }
      }
    },
  );

  await pg.stop();
});
