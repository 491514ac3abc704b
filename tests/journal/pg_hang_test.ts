/**
 * A node whose PostgreSQL connections stop answering without being cut (a blackhole: bytes stop
 * passing either way, the sockets stay open), so that a query sent on one never settles. The node
 * reaches PostgreSQL through a relay that blackholes the connections open at a moment while new
 * ones still pass; it must give such a read up and read again, on new connections.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { makeRegistry, until } from "../helpers/registry.ts";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { TcpRelay } from "../helpers/tcp.ts";
import { PgJournal, type PgJournalOptions, readGiveUpMs } from "../../src/journal/pg_journal.ts";
import type { TaskRegistry } from "../../src/tasks/task_registry.ts";

let pg: TestPostgres;

/** A short wait, so that a read is given up at its floor (`readGiveUpMs`, 10 s). */
const LEASE = { leaseMs: 2000, renewMs: 200, waitMs: 1000 };
/** How long a test waits for a node to go on after a blackhole: several give-ups and more. */
const PATIENCE_MS = 30_000;

async function journal(url: string, id: string, relay?: TcpRelay): Promise<PgJournal> {
  return await PgJournal.open(
    relay ? url.replace(`:${pg.port}/`, `:${relay.port}/`) : url,
    {
      node: id,
      bufferBytes: 64 * 1024 * 1024,
      maxAttempts: 3,
      ...LEASE,
    } satisfies PgJournalOptions,
  );
}

const statusOf = (registry: TaskRegistry, id: string) => {
  try {
    return registry.get(id).state.status;
  } catch {
    return undefined;
  }
};

/** Polls `check` (a query on a direct connection) until it holds. */
async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + PATIENCE_MS;
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${PATIENCE_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface Backend {
  port: number;
  /** Its last statement was `LISTEN`: the connection the node listens on. */
  listens: boolean;
  /** It waits for the client to send more (within a statement, a transaction, or between). */
  waits: boolean;
}

/** The node's connections as PostgreSQL sees them (`client_port` is the relay's side). */
async function backendsOf(sql: postgres.Sql, node: string): Promise<Backend[]> {
  return await sql<Backend[]>`
    SELECT client_port AS port, query ILIKE 'listen %' AS listens,
      wait_event IS NOT DISTINCT FROM 'ClientRead' AS waits
    FROM pg_stat_activity WHERE application_name = ${`klym ${node}`}`;
}

/**
 * Waits until the backends of the blackholed `ports` all wait for their client: what reached
 * PostgreSQL before the blackhole has run, and nothing more can reach it. (A connection blackholed
 * before its startup was through has no backend named after the node, and never runs anything.)
 */
async function quiet(sql: postgres.Sql, node: string, ports: number[]): Promise<void> {
  await eventually("The blackholed connections wait for their client", async () => {
    const backends = await backendsOf(sql, node);
    return backends.every((b) => !ports.includes(b.port) || b.waits);
  });
}

Deno.test("a node whose PostgreSQL read connection stops answering", async (t) => {
  pg = await startPostgres();
  try {
    await t.step("reads another node's change again after its read never settles", async () => {
      const url = await pg.database();
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      await using b = makeRegistry({}, { journal: await journal(url, "b") });
      // A task running on b, changed there later; a (started after) never claims it.
      const task = b.start({ kind: "sleep", params: { ms: 120_000, tick_ms: 60_000 } });
      await b.durable();
      await until(b, () => b.pidOf(task.id) !== undefined);
      const relay = new TcpRelay(pg.port);
      const a = makeRegistry({}, { journal: await journal(url, "a", relay) });
      try {
        await until(a, () => statusOf(a, task.id) === "running");
        // a's listener goes on hearing b; the connections its reads go on stop answering.
        let listener: number | undefined;
        await eventually("a listens", async () => {
          listener = (await backendsOf(sql, "a")).find((b) => b.listens)?.port;
          return listener !== undefined;
        });
        const held = relay.blackhole((port) => port !== listener);
        assert(held.length > 0 && held.length < 4, `${held.length} pooled connections held`);
        await quiet(sql, "a", held);
        b.cancel(task.id, "changed on b");
        await b.durable();
        // The read that the notification sets off is sent on a blackholed connection: unless it
        // is given up, every later read waits behind it and a never hears of the cancel.
        // Each read given up (10 s) costs one of the held connections at most.
        const patience = (held.length + 2) * readGiveUpMs(LEASE.waitMs) + PATIENCE_MS;
        await until(a, () => statusOf(a, task.id) === "cancelled", patience);
      } finally {
        await a.shutdown();
        await relay.close();
        await sql.end();
      }
    });
  } finally {
    await pg.stop();
  }
});
