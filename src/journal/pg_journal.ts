/**
 * The store several Klym nodes share: PostgreSQL (`KLYM_STATE=postgres://…`, through the
 * `postgres` client). It implements the journal like the SQLite file, plus what a cluster needs:
 *
 * - **Claims.** A node takes queued work with one `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP
 *   LOCKED)` under a transaction-scoped advisory lock: the principal with the fewest running tasks
 *   on all nodes first, its oldest task first, within the principal's running limit on this node.
 * - **Fencing.** A claim sets the task's `node` and bumps its `attempt`; every later write of the
 *   node is `… WHERE node = $me AND attempt = $a AND status = 'running'`, so a node declared lost (a
 *   zombie) changes nothing. A cancel from any node is `… WHERE status IN ('queued','running')`.
 * - **Leases.** Each node renews its row in `klym_nodes` every renewal; any node that has itself
 *   been connected for a whole lease marks nodes silent for longer than the lease lost, and their
 *   running tasks `interrupted` (`node_lost`), or queued again when their kind is retryable and
 *   attempts remain. A restarted node does the same at start for its own tasks only.
 * - **Changes elsewhere** come by `LISTEN/NOTIFY` (one channel, `klym`: a task's id or its new log
 *   lines), are read back and handed to the registry (`attach`), a row never older than one handed
 *   over before; a change to a task this node runs (a cancel) is read at once, beside any read
 *   under way. The lease renewal re-reads the tasks this node runs, so a lost notification still
 *   arrives within one renewal; the client reconnects within `MAX_BACKOFF_MS`, and its listener
 *   then reads back everything that changed meanwhile. Each renewal notifies the node itself (a
 *   beat): a listener that hears none of `DEAF_AFTER_BEATS` in a row is made anew, and reads back.
 * - **Outages.** Writes go through one ordered queue, retried until PostgreSQL answers again; the
 *   queue is bounded (log lines beyond it are dropped and counted), `unavailable()` tells the
 *   registry to refuse admissions meanwhile, and `health()` says so.
 */
import postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import { isKlymError, KlymError } from "../errors.ts";
import type { Failure } from "../protocol.ts";
import type { TaskState } from "../tasks/task_state.ts";
import { LINE_OVERHEAD_BYTES } from "../tasks/log_buffer.ts";
import { SpendSums } from "./spend_sums.ts";
import { settleWithin } from "./settle_within.ts";
import { CLUSTER_LOCK, PG_MIGRATIONS, PG_SCHEMA_VERSION } from "./pg_schema.ts";
import {
  type Claim,
  type Journal,
  type JournalHealth,
  type JournalLine,
  type JournalSave,
  type JournalSpend,
  type JournalTask,
  type NodeInfo,
  type NodeSide,
  type RestoredTask,
} from "./journal.ts";

const logger = getLogger(["klym", "journal"]);

type Sql = postgres.Sql;
/** A connection or a transaction: what one statement runs on. */
type Tx = postgres.TransactionSql;

/** Longest a log line or a progress change waits before it is written. */
const FLUSH_MS = 50;
/** Longest wait between two attempts to reach PostgreSQL again. */
const MAX_BACKOFF_MS = 1000;
/**
 * Longest a read of other nodes' changes may take before it is given up and made again whole:
 * three times KLYM_SHARED_WAIT_MS, and at least `READ_GIVE_UP_FLOOR_MS` for a large catch-up.
 */
const READ_GIVE_UP_FLOOR_MS = 10_000;
export const readGiveUpMs = (waitMs: number) => Math.max(3 * waitMs, READ_GIVE_UP_FLOOR_MS);
const STREAMS = ["stdout", "stderr"] as const;
const CHANNEL = "klym";
/**
 * A node's own beats (one per lease renewal) sent and not heard back, in a row, after which its
 * listener counts as deaf (its connection lost without the client knowing it, or its LISTEN never
 * made again after a reconnection) and is made anew: about three KLYM_NODE_RENEW_MS.
 */
export const DEAF_AFTER_BEATS = 3;
/**
 * Longest a new listener may take to begin listening (connect, then LISTEN) before it is made
 * anew: twice KLYM_SHARED_WAIT_MS, counted at lease renewals, which PostgreSQL answered.
 */
export const listenDeadlineMs = (waitMs: number) => 2 * waitMs;
/**
 * Longest a transaction that holds the cluster's lock may sit idle before PostgreSQL ends its
 * session (and the lock): half of KLYM_NODE_LEASE_MS, so that a node cut off while it held the
 * lock keeps no other node from judging it lost in time.
 */
export const idleInTransactionMs = (leaseMs: number) => Math.ceil(leaseMs / 2);

export interface PgJournalOptions {
  /** This node's id (KLYM_NODE_ID). */
  readonly node: string;
  /** The URL other nodes reach this one at (KLYM_NODE_URL), shown in `klym_nodes`. */
  readonly url?: string | undefined;
  /** A node silent this long is lost (KLYM_NODE_LEASE_MS). */
  readonly leaseMs: number;
  /** How often this node renews its lease (KLYM_NODE_RENEW_MS). */
  readonly renewMs: number;
  /** Bytes of writes that may wait for PostgreSQL (KLYM_SHARED_BUFFER_BYTES). */
  readonly bufferBytes: number;
  /** How long `start` and `cancel` wait for their write (KLYM_SHARED_WAIT_MS). */
  readonly waitMs: number;
  /** Runs a retryable task may have in all (KLYM_MAX_ATTEMPTS). */
  readonly maxAttempts: number;
}

interface Op {
  readonly bytes: number;
  /** Tasks whose status this write changes (log lines, progress and saves change none). */
  readonly ids: readonly string[];
  run(sql: Sql): Promise<void>;
  /** Called once the write is behind (written, or failed for good). */
  done?(): void;
}

interface PendingLogs {
  lines: JournalLine[];
  keepFrom: number;
  dropped: number;
  node: string | undefined;
  attempt: number;
  bytes: number;
}

interface TaskRow {
  id: string;
  owner: string;
  kind: string;
  model: string | null;
  prompt: string | null;
  params: string;
  timeout_s: number;
  created_at: number;
  status: string;
  queued_at: number | null;
  started_at: number | null;
  code_started_at: number | null;
  finished_at: number | null;
  progress: string | null;
  result: string | null;
  error: string | null;
  logs_dropped: number;
  retryable: boolean;
  node: string | null;
  attempt: number;
  pinned: string | null;
  rev: number;
}

/** The columns of a task row, each prefixed with `table.` when given. */
const columns = (table = "") =>
  [
    "id, owner, kind, model, prompt, params, timeout_s, created_at, status, queued_at, started_at",
    "code_started_at, finished_at, progress, result, error, logs_dropped, retryable, node, attempt",
    "pinned",
  ].join(", ").split(", ").map((c) => `${table}${c}`).join(", ") + `, ${table}rev::float8 AS rev`;
const TASK_COLUMNS = columns();

/** A PostgreSQL client with `max` connections, named `name` in `pg_stat_activity`. */
function client(url: string, name: string, { max, options }: {
  max: number;
  options: PgJournalOptions;
}): Sql {
  const { waitMs } = options;
  return postgres(url, {
    max,
    connect_timeout: Math.max(1, Math.ceil(waitMs / 1000)),
    idle_timeout: 0,
    // The client's own backoff grows to 20 s between attempts; the listener's follows it, and
    // other nodes' changes (a cancel) would go unheard that long after PostgreSQL is back.
    backoff: reconnectDelayS,
    onnotice: () => {},
    // Every statement goes as its text (no named prepared statements kept per connection): what
    // the client's documentation asks for behind a pooler in transaction mode, and what lets a
    // test relay hold a connection at a given statement.
    prepare: false,
    // Names the node in pg_stat_activity, for operators (and tests) looking at its connections.
    connection: { application_name: name },
  });
}

/** A URL without its password, for logs and `/healthz`. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "postgres://…";
  }
}

export function isSharedState(state: string | undefined): state is string {
  return state !== undefined && /^postgres(ql)?:\/\//.test(state);
}

/** Errors that mean "PostgreSQL is not answering now" (try again), not "this write is wrong". */
function transient(error: unknown): boolean {
  const code = String((error as { code?: unknown })?.code ?? "");
  return /^(08|57P|53)/.test(code) ||
    /ECONN|EPIPE|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|CONNECT|CONNECTION|CLOSED|ENDED/.test(code) ||
    /connect|terminat|shut ?down|closed/i.test(String((error as Error)?.message ?? ""));
}

/**
 * Errors of a new connection that PostgreSQL refused or never answered: it is away (or full), not
 * just one connection cut. A connection cut under a query (a restart, a terminated backend) says
 * nothing about now: the query is tried again on a new one, and that attempt tells.
 */
function cannotConnect(error: unknown): boolean {
  const code = String((error as { code?: unknown })?.code ?? "");
  return /^(57P03|08001|08004|53300)$/.test(code) ||
    /ECONNREFUSED|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|CONNECT_TIMEOUT/.test(
      code,
    );
}

/**
 * The client can throw from a timer when a connection is cut while it writes (its socket is gone:
 * "Cannot read properties of null (reading 'write')"). That must not end the node: the query it
 * belonged to fails and is retried. Only errors thrown from inside the client are held back.
 */
let clientGuard = false;
function guardClientErrors(): void {
  if (clientGuard) return;
  clientGuard = true;
  globalThis.addEventListener("error", (event) => {
    const stack = String((event.error as Error | undefined)?.stack ?? "");
    if (!CLIENT_FRAME.test(stack)) return;
    event.preventDefault();
    logger.warn("A PostgreSQL connection broke while writing: {error}", {
      error: (event.error as Error).message,
    });
  });
  // A connection reset while PostgreSQL shuts down can also reject a promise of the client's
  // socket that nothing awaits (`read ECONNRESET`, no frame of the caller's), and so can a
  // connection attempt refused while it is down: the query it belonged to fails and is retried,
  // the node goes on. Other rejections are left alone.
  globalThis.addEventListener("unhandledrejection", (event) => {
    const error = event.reason as { code?: unknown; syscall?: unknown; stack?: unknown } | null;
    if (!socketBroke(error)) return;
    event.preventDefault();
    logger.warn("A PostgreSQL connection was cut: {error}", { error: String(error) });
  });
}

/** A frame of the PostgreSQL client's connection code. */
const CLIENT_FRAME = /[\\/]postgres[\\/][\d.]+[\\/]src[\\/]connection\.js/;

/**
 * A socket error of a connection cut under it (reset, broken pipe): the socket's own, read or
 * written, or the client's write on a socket PostgreSQL has ended ("This socket has been ended by
 * the other party", thrown from its write timer while PostgreSQL shuts down); or a connection
 * attempt refused (`connect ECONNREFUSED`, from the socket's connect callback: Klym opens no
 * other sockets of Node's kind than the PostgreSQL client's); or PostgreSQL ending a connection
 * (57P01–57P03).
 */
function socketBroke(
  error: { code?: unknown; syscall?: unknown; stack?: unknown } | null,
): boolean {
  if (!error || typeof error !== "object") return false;
  const [code, syscall, stack] = [String(error.code), String(error.syscall), String(error.stack)];
  if (code === "ECONNREFUSED") return syscall === "connect" && /_afterConnect/.test(stack);
  // PostgreSQL ending the connection itself (shutdown, pg_terminate_backend, crash recovery): the
  // client rejects what it had in flight on it, awaited or not.
  if (/^57P0[1-3]$/.test(code)) return CLIENT_FRAME.test(stack);
  // The client ending (the node closing) rejects what is still in flight on its connections, a
  // query given up long before (on a connection that stopped answering) among them.
  if (code === "CONNECTION_DESTROYED") return CLIENT_FRAME.test(stack);
  return /^(ECONNRESET|EPIPE)$/.test(code) &&
    (CLIENT_FRAME.test(stack) ||
      /^(read|write)$/.test(syscall) &&
        /onStreamRead|onWriteComplete|[\\/]postgres[\\/]/.test(stack));
}

const HOUR_MS = 3_600_000;
const currentHour = (now: number) => now - now % HOUR_MS;

interface SpendRow {
  hour: number;
  owner: string;
  model: string;
  calls: string | number;
  refusals: string | number;
  input_tokens: string | number;
  output_tokens: string | number;
}

/** bigint columns arrive as strings. */
function spendOf(row: SpendRow): JournalSpend {
  return {
    hour: row.hour,
    owner: row.owner,
    model: row.model,
    calls: Number(row.calls),
    refusals: Number(row.refusals),
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
  };
}

const message = (error: unknown) => error instanceof Error ? error.message : String(error);

/** Seconds before the client's `retries`th attempt to reconnect: 50 ms, doubling to MAX_BACKOFF_MS. */
export function reconnectDelayS(retries: number): number {
  return Math.min(MAX_BACKOFF_MS, 50 * 2 ** Math.max(0, retries - 1)) / 1000;
}

export class PgJournal implements Journal {
  readonly where: string;
  readonly node: string;
  readonly #sql: Sql;
  readonly #options: PgJournalOptions;
  #restored: RestoredTask[] = [];
  /** Lines of the restored tasks, read by their logs until the registry holds its own. */
  readonly #restoredLines = new Map<string, JournalLine[]>();
  readonly #ops: Op[] = [];
  #draining = false;
  #enqueued = 0;
  #done = 0;
  #waiters: { upTo: number; resolve: () => void }[] = [];
  #bufferBytes = 0;
  /** Status writes not yet committed, per task: a live row read back meanwhile would be stale. */
  readonly #pendingOf = new Map<string, number>();
  /** Tasks whose row was read while a status write of ours was pending: read again after it. */
  readonly #readAfterWrite = new Set<string>();
  /** The change number of the row last handed to the registry, per task. */
  readonly #revOf = new Map<string, number>();
  #pendingLogs = new Map<string, PendingLogs>();
  #pendingProgress = new Map<string, JournalTask>();
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #renewTimer: ReturnType<typeof setInterval> | undefined;
  #retryTimer: { timer: ReturnType<typeof setTimeout>; wake: () => void } | undefined;
  #reachable = true;
  /**
   * Answers PostgreSQL has given so far. A query that fails after a later query was answered failed
   * on its own connection (cut by a restart, its error read late), not because PostgreSQL is away.
   */
  #answers = 0;
  #reachableSince = Date.now();
  #lastProblem: string | undefined;
  #error: string | undefined;
  #failures = 0;
  #droppedLines = 0;
  #closed = false;
  #side: NodeSide | undefined;
  readonly #url: string;
  /** The client of this node's listener: its own, so that a deaf one can be ended whole. */
  #listener: Sql | undefined;
  /** Names this journal's listeners apart from any other's, a restarted node's of the same id too. */
  readonly #token = crypto.randomUUID().slice(0, 8);
  /** Listeners made so far; each one's connection is named after its number. */
  #listenerNo = 0;
  /** Whether the current listener has begun listening, and when it was asked to. */
  #listening = false;
  #listenAskedAt = 0;
  /** Until when renewals end the connections of listeners made before (0: none to end). */
  #sweepUntil = 0;
  /** The number of this node's last beat, and of the last it heard back. */
  #beat = 0;
  #heardBeat = 0;
  /** Beats sent (their notification committed) while listening, not yet heard back, oldest first. */
  #unheardBeats: number[] = [];
  /** Tasks the registry knows (rows handed over), and the last log line it has of each. */
  readonly #seenLogs = new Map<string, number>();
  /** The claim (this node, attempt) each task's lines and progress are written under. */
  readonly #fences = new Map<string, { node: string; attempt: number }>();
  /** Claims asked and not yet answered (the registry asks one at a time). */
  #claimsAsked = 0;
  /** Saves of the restored tasks. */
  readonly #restoredSaves = new Map<string, JournalSave[]>();
  readonly #wantTasks = new Set<string>();
  readonly #wantLogs = new Set<string>();
  #syncing: Promise<void> | undefined;
  #syncAgain = false;
  /**
   * The change number up to which every other node's change has been notified here: read at start,
   * then carried by this node's own beat (see `#renew`) each time its listener hears it. A catch-up
   * after a reconnection reads from there, not from the newest row read here: rows read by other
   * paths (a renewal's, a cancel's) are newer than changes whose notification was lost.
   */
  #heardRev = 0;
  #renewing = false;
  #lastRenewal = Date.now();
  /** The cluster's model spend as last read, plus this node's since; re-read at each renewal. */
  readonly #spend = new SpendSums();
  #spendWrites = 0;

  private constructor(url: string, sql: Sql, options: PgJournalOptions) {
    this.where = redactUrl(url);
    this.#url = url;
    this.node = options.node;
    this.#sql = sql;
    this.#options = options;
  }

  /**
   * Connects, migrates, registers this node and reads every task back (this node's own running
   * ones interrupted, or queued again when retryable); throws a `JOURNAL_UNUSABLE` KlymError saying why not.
   */
  static async open(url: string, options: PgJournalOptions): Promise<PgJournal> {
    guardClientErrors();
    const sql = client(url, `klym ${options.node}`, { max: 4, options });
    const journal = new PgJournal(url, sql, options);
    try {
      await journal.#migrate();
      await journal.#register();
      await journal.#load();
    } catch (error) {
      await sql.end({ timeout: 1 }).catch(() => {});
      if (isKlymError(error, "JOURNAL_UNUSABLE")) throw error;
      throw new KlymError(
        "JOURNAL_UNUSABLE",
        `Cannot use KLYM_STATE ${journal.where}: ${
          message(error)
        }; check that PostgreSQL runs there and the user may create tables`,
      );
    }
    return journal;
  }

  /**
   * Takes the cluster's lock for the rest of `sql`'s transaction. A node cut off while it holds it
   * (a partition its socket never sees) would hold every node's claims, renewals and reaps for as
   * long as the cut lasts: PostgreSQL ends the session once the transaction sits idle for
   * `idleInTransactionMs` instead. Set for these transactions only, not for the node's sessions:
   * a stall of the node itself in any other transaction (a write of many lines) loses nothing.
   */
  async #lockCluster(sql: Tx): Promise<void> {
    const idleMs = String(idleInTransactionMs(this.#options.leaseMs));
    await sql`SELECT set_config('idle_in_transaction_session_timeout', ${idleMs}, true),
      pg_advisory_xact_lock(${CLUSTER_LOCK})`;
  }

  async #migrate(): Promise<void> {
    await this.#sql.begin(async (sql) => {
      await this.#lockCluster(sql);
      await sql`CREATE TABLE IF NOT EXISTS klym_schema (version integer NOT NULL)`;
      const [row] = await sql<{ version: number }[]>`SELECT version FROM klym_schema`;
      const version = row?.version ?? 0;
      if (version > PG_SCHEMA_VERSION) {
        throw new KlymError(
          "JOURNAL_UNUSABLE",
          `Cannot use KLYM_STATE ${this.where}: it was written by a newer Klym (schema version ${version}, this one knows up to ${PG_SCHEMA_VERSION}); upgrade this node`,
        );
      }
      if (version === PG_SCHEMA_VERSION) return;
      for (const migration of PG_MIGRATIONS.slice(version)) await sql.unsafe(migration);
      if (row) await sql`UPDATE klym_schema SET version = ${PG_SCHEMA_VERSION}`;
      else await sql`INSERT INTO klym_schema (version) VALUES (${PG_SCHEMA_VERSION})`;
    });
  }

  async #register(): Promise<void> {
    const url = this.#options.url ?? null;
    await this.#sql`
      INSERT INTO klym_nodes (id, url) VALUES (${this.node}, ${url})
      ON CONFLICT (id) DO UPDATE SET url = ${url}, started_at = now(), renewed_at = now(),
        alive = true, running = 0`;
  }

  async #load(): Promise<void> {
    const now = Date.now();
    // What this node ran before it restarted is its own to settle; nothing else is.
    const ended = await this.#sql.begin((sql) =>
      this.#reapNodes(sql, [this.node], now, "restarted")
    );
    if (ended > 0) {
      logger.warn("{count} tasks this node ran were settled when it started again", {
        count: ended,
      });
    }
    const rows = await this.#sql.unsafe<TaskRow[]>(
      `SELECT ${TASK_COLUMNS} FROM klym_tasks ORDER BY no`,
    );
    const lines = await this.#sql<
      { task: string; seq: number; stream: number; time: number; text: string }[]
    >`SELECT task, seq, stream, time, text FROM klym_logs ORDER BY task, seq`;
    for (const line of lines) {
      let list = this.#restoredLines.get(line.task);
      if (!list) this.#restoredLines.set(line.task, list = []);
      list.push({
        seq: line.seq,
        stream: STREAMS[line.stream] ?? "stdout",
        time: line.time,
        text: JSON.parse(line.text),
      });
    }
    const saves = await this.#sql<
      { task: string; seq: number; tool: string; ok: boolean; time: number; reply: string }[]
    >`SELECT task, seq, tool, ok, time, reply FROM klym_saves ORDER BY task, seq`;
    for (const save of saves) {
      let list = this.#restoredSaves.get(save.task);
      if (!list) this.#restoredSaves.set(save.task, list = []);
      list.push({ ...save, taskId: save.task, reply: JSON.parse(save.reply) });
    }
    await this.#readSpend(0);
    this.#restored = rows.map((row) => {
      const list = this.#restoredLines.get(row.id) ?? [];
      const last = list.at(-1)?.seq ?? 0;
      this.#seenLogs.set(row.id, last);
      this.#heardRev = Math.max(this.#heardRev, row.rev);
      let bytes = 0;
      for (const line of list) bytes += line.text.length + LINE_OVERHEAD_BYTES;
      return {
        ...taskOf(row),
        logs: {
          lastSeq: last,
          size: list.length,
          bytes,
          dropped: Math.max(row.logs_dropped, last - list.length),
        },
      };
    });
  }

  /** Reads the spend of the hours from `since` on as the shared store has it. */
  async #readSpend(since: number): Promise<void> {
    const rows = await this.#sql<SpendRow[]>`
      SELECT hour, owner, model, calls, refusals, input_tokens, output_tokens
      FROM klym_model_spend WHERE hour >= ${since}`;
    // A write of this node's still on its way would be counted twice, or lost: read again later.
    if (this.#spendWrites > 0) return;
    this.#spend.replaceFrom(since, rows.map(spendOf));
  }

  /**
   * Settles the running tasks of `nodes` (lost, or this one restarted): retryable ones with
   * attempts left go back to the queue, the others become `interrupted`. Returns how many.
   */
  async #reapNodes(
    sql: Tx,
    nodes: readonly string[],
    now: number,
    why: "lost" | "restarted",
  ): Promise<number> {
    const lease = this.#options.leaseMs;
    const error = (node: string): Failure =>
      why === "lost"
        ? {
          code: "node_lost",
          message:
            `Node "${node}" stopped renewing its lease (KLYM_NODE_LEASE_MS, ${lease} ms) while this task ran there. Its logs up to then are kept; start it again if it is still needed`,
        }
        : {
          code: "interrupted",
          message:
            `Node "${node}" stopped while this task ran there and was found running when that node started again at ${
              new Date(now).toISOString()
            }. Its logs up to then are kept; start it again if it is still needed`,
        };
    let count = 0;
    for (const node of nodes) {
      const rows = await sql<{ id: string; status: string; attempt: number }[]>`
        WITH settled AS (
          SELECT id, retryable AND pinned IS NULL
            AND attempt < ${this.#options.maxAttempts}::int AS again
          FROM klym_tasks WHERE (node = ${node} AND status = 'running')
            OR (pinned = ${node} AND status = 'queued')
          FOR UPDATE
        )
        UPDATE klym_tasks t SET
          status = CASE WHEN s.again THEN 'queued' ELSE 'interrupted' END,
          node = CASE WHEN s.again THEN NULL ELSE t.node END,
          queued_at = CASE WHEN s.again THEN ${now}::float8 ELSE t.queued_at END,
          finished_at = CASE WHEN s.again THEN NULL ELSE ${now}::float8 END,
          error = CASE WHEN s.again THEN NULL ELSE ${JSON.stringify(error(node))}::text END,
          rev = nextval('klym_rev')
        FROM settled s WHERE t.id = s.id
        RETURNING t.id, t.status, t.attempt`;
      for (const row of rows) {
        await sql`
          INSERT INTO klym_task_events (task, time, status, detail, node, attempt)
          VALUES (${row.id}, ${now}, ${row.status},
            ${
          row.status === "queued" ? null : JSON.stringify(error(node))
        }, ${node}, ${row.attempt})`;
        await this.#notify(sql, "t", row.id);
      }
      count += rows.length;
    }
    return count;
  }

  #notify(sql: Tx, type: "t" | "l", id: string): Promise<unknown> {
    return sql`SELECT pg_notify(${CHANNEL}, ${JSON.stringify({ n: this.node, t: type, id })})`;
  }

  async nodes(): Promise<NodeInfo[]> {
    const rows = await this.#sql<
      {
        id: string;
        url: string | null;
        alive: boolean;
        slots: number;
        running: number;
        renewed: number;
        ago: number;
        started: number;
      }[]
    >`SELECT id, url, alive, slots, running,
        (extract(epoch FROM renewed_at) * 1000)::float8 AS renewed,
        greatest(0, extract(epoch FROM now() - renewed_at) * 1000)::float8 AS ago,
        (extract(epoch FROM started_at) * 1000)::float8 AS started
      FROM klym_nodes ORDER BY id`;
    return rows.map((r) => ({
      id: r.id,
      url: r.url ?? undefined,
      alive: r.alive,
      slots: r.slots,
      running: r.running,
      renewedAt: r.renewed,
      renewedAgoMs: r.ago,
      startedAt: r.started,
    }));
  }

  /** Where the live node `id` is reached (its KLYM_NODE_URL), `undefined` when lost or unknown. */
  async nodeUrl(id: string): Promise<string | undefined> {
    if (id === this.node) return undefined;
    const [row] = await this.#sql<{ url: string | null }[]>`
      SELECT url FROM klym_nodes WHERE id = ${id} AND alive
        AND renewed_at >= now() - make_interval(secs => ${this.#options.leaseMs / 1000})`;
    return row?.url ?? undefined;
  }

  restore(_now: number): RestoredTask[] {
    const restored = this.#restored;
    this.#restored = [];
    return restored;
  }

  attach(side: NodeSide): void {
    this.#side = side;
    this.#listenAnew();
    this.#renewTimer = setInterval(() => void this.#renew(), this.#options.renewMs);
    // The row registered before the registry was attached says 0 slots until the first renewal.
    void this.#renew();
  }

  /**
   * Listens for other nodes' changes on a client of its own, ending the one before (a deaf
   * listener's connection may be held for good: only ending its client frees the channel).
   */
  #listenAnew(): void {
    const old = this.#listener;
    this.#unheardBeats = [];
    this.#listening = false;
    if (this.#closed) return;
    const no = ++this.#listenerNo;
    this.#listenAskedAt = Date.now();
    const sql = this.#listener = client(this.#url, this.#listenerName(no), {
      max: 1,
      options: this.#options,
    });
    if (old) {
      void old.end({ timeout: 0 }).catch(() => {});
      // An ended client can still open a connection it was about to retry, and a held one lives
      // on in PostgreSQL: renewals end them by name for a while (`#sweepListeners`).
      this.#sweepUntil = Date.now() + this.#options.waitMs + 2 * MAX_BACKOFF_MS;
    }
    void sql.listen(CHANNEL, (payload) => {
      if (this.#listener === sql) this.#onNotify(payload);
    }, () => {
      if (this.#listener !== sql) return;
      // (Re)connected: what changed while the channel was down is read back by change number,
      // and beats sent before count no more.
      this.#listening = true;
      this.#unheardBeats = [];
      this.#wantCatchUp();
      this.#scheduleSync();
    }).catch((error) => {
      // Made anew at a renewal once `LISTEN_DEADLINE_MS` has passed.
      if (this.#listener === sql) {
        logger.warn("Cannot listen for other nodes' changes: {error}", { error });
      }
    });
  }

  /**
   * The name of listener `no` in `pg_stat_activity`: `klym-listen <token>.<no> <node>` (cut to
   * PostgreSQL's 63 bytes after the number, so a long node id never hides which listener it is).
   */
  #listenerName(no?: number): string {
    return no === undefined
      ? `klym-listen ${this.#token}.`
      : `klym-listen ${this.#token}.${no} ${this.node}`;
  }

  /**
   * Ends the connections of this journal's listeners but the current one (all of them once
   * closed): those of ended clients that connected again, and deaf ones PostgreSQL still holds.
   */
  async #sweepListeners(): Promise<void> {
    const keep = this.#closed ? null : `klym-listen ${this.#token}.${this.#listenerNo} `;
    await this.#sql`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
      WHERE starts_with(application_name, ${this.#listenerName()})
        AND (${keep}::text IS NULL OR NOT starts_with(application_name, ${keep}::text))`;
  }

  /**
   * Makes the listener anew when it has not begun listening within `LISTEN_DEADLINE_MS`, or
   * once `DEAF_AFTER_BEATS` of this node's own beats went unheard; it then reads back, by change
   * number, whatever it missed.
   */
  #checkHearing(): void {
    if (!this.#listening) {
      const waited = Date.now() - this.#listenAskedAt;
      if (waited < listenDeadlineMs(this.#options.waitMs)) return;
      logger.warn(
        "This node's listener did not begin listening within {ms} ms: it listens anew",
        { ms: waited },
      );
    } else {
      this.#unheardBeats = this.#unheardBeats.filter((beat) => beat > this.#heardBeat);
      if (this.#unheardBeats.length < DEAF_AFTER_BEATS) return;
      logger.warn(
        "This node's listener heard none of its last {count} beats: it listens anew and reads back what changed",
        { count: this.#unheardBeats.length },
      );
    }
    this.#wantCatchUp();
    this.#listenAnew();
  }

  /**
   * Set when a catch-up is wanted (a reconnection, a read given up): every unfinished row is read
   * again, and every row changed after this change number (less 64, for writes still committing).
   * Beats heard after it was set do not move it: changes made while the listener was away were
   * never notified, whatever the beats heard since say.
   */
  #catchUpFrom: number | undefined;

  #wantCatchUp(from = this.#heardRev): void {
    this.#catchUpFrom = Math.min(this.#catchUpFrom ?? Infinity, from);
  }

  #onNotify(payload: string): void {
    let note: { n?: unknown; t?: unknown; id?: unknown };
    try {
      note = JSON.parse(payload);
    } catch {
      return;
    }
    if (note.n === this.node) {
      const { rev, beat, k } = note as { rev?: unknown; beat?: unknown; k?: unknown };
      // Before the listener has begun (its catch-up reads from `#heardRev`), a beat heard says
      // nothing of the changes made before it began.
      if (note.t !== "b" || !this.#listening) return;
      if (typeof rev === "number") this.#heardRev = Math.max(this.#heardRev, rev);
      if (k === this.#token && typeof beat === "number") {
        this.#heardBeat = Math.max(this.#heardBeat, beat);
      }
      return;
    }
    if (typeof note.id !== "string") return;
    // A change to a task this node ran (a cancel, its claim settled) is read at once: behind a
    // read of other tasks' lines under way, its process would run on meanwhile.
    if (note.t === "t" && this.#fences.has(note.id)) return void this.#readOwn(note.id);
    (note.t === "l" ? this.#wantLogs : this.#wantTasks).add(note.id);
    this.#scheduleSync();
  }

  /** Reads one task's row and hands it over now, beside any sync under way. */
  async #readOwn(id: string): Promise<void> {
    try {
      const rows = await this.#sql.unsafe<TaskRow[]>(
        `SELECT ${TASK_COLUMNS} FROM klym_tasks WHERE id = $1`,
        [id],
      );
      for (const row of rows) this.#deliver(row);
    } catch {
      // The next sync reads it (after a reconnection, everything is read again).
      this.#wantTasks.add(id);
      this.#scheduleSync();
    }
  }

  #scheduleSync(): void {
    if (this.#closed) return;
    if (this.#syncing) {
      this.#syncAgain = true;
      return;
    }
    this.#syncing = this.#sync().finally(() => {
      this.#syncing = undefined;
      if (this.#syncAgain) {
        this.#syncAgain = false;
        this.#scheduleSync();
      }
    });
  }

  /** Reads back what other nodes changed and hands it to the registry, rows before lines. */
  async #sync(): Promise<void> {
    const side = this.#side;
    if (!side) return;
    const ids = new Set(this.#wantTasks);
    const logIds = new Set(this.#wantLogs);
    const from = this.#catchUpFrom;
    this.#wantTasks.clear();
    this.#wantLogs.clear();
    this.#catchUpFrom = undefined;
    for (const id of logIds) if (!this.#seenLogs.has(id)) ids.add(id);
    // A query on a connection the client lost while writing to it (see `guardClientErrors`), or on
    // one whose answers stopped coming, may never settle: the read is given up (`readGiveUpMs`)
    // and made again whole, rather than holding every later read behind it.
    const giveUpMs = readGiveUpMs(this.#options.waitMs);
    try {
      await settleWithin(
        this.#read(from, ids, logIds),
        giveUpMs,
        "A read of other nodes' changes",
        "three times KLYM_SHARED_WAIT_MS, 10 s at least; it is made again whole",
      );
    } catch (error) {
      // Read again once PostgreSQL answers (the listener's reconnection asks for a catch-up).
      for (const id of ids) this.#wantTasks.add(id);
      for (const id of logIds) this.#wantLogs.add(id);
      const gaveUp = isKlymError(error, "STORE_UNAVAILABLE");
      if (from !== undefined || gaveUp) this.#wantCatchUp(from);
      if (gaveUp || !transient(error)) {
        logger.warn("Cannot read other nodes' changes: {error}", { error });
      }
    }
  }

  /**
   * Reads the rows of `ids` (with a catch-up `from`, those changed after it and the unfinished ones
   * too) and the new lines of `logIds`.
   */
  async #read(from: number | undefined, ids: Set<string>, logIds: Set<string>): Promise<void> {
    const all = from !== undefined;
    const rows = all
      ? await this.#sql.unsafe<TaskRow[]>(
        `SELECT ${TASK_COLUMNS} FROM klym_tasks WHERE rev > $1 OR status IN ('queued', 'running') ORDER BY no`,
        [from - 64],
      )
      : ids.size === 0
      ? []
      : await this.#sql.unsafe<TaskRow[]>(
        `SELECT ${TASK_COLUMNS} FROM klym_tasks WHERE id = ANY($1) ORDER BY no`,
        [[...ids]],
      );
    for (const row of rows) {
      this.#deliver(row);
      if (all) logIds.add(row.id);
    }
    await this.#syncLogs(logIds);
  }

  #deliver(row: TaskRow): void {
    // Reads run side by side: a row older than one handed over already is stale.
    if (row.rev <= (this.#revOf.get(row.id) ?? -Infinity)) return;
    // A status write of ours is still on its way: a live row read now is older than what we
    // know, so it is read again once the write is behind. An ended row is final whatever we
    // write (every write asks for a live one): it goes now.
    const ended = !["queued", "running"].includes(row.status);
    if (!ended && (this.#pendingOf.get(row.id) ?? 0) > 0) {
      this.#readAfterWrite.add(row.id);
      return;
    }
    this.#revOf.set(row.id, row.rev);
    if (!this.#seenLogs.has(row.id)) this.#seenLogs.set(row.id, 0);
    this.#side?.onChange({
      type: "task",
      task: { ...taskOf(row), logs: { lastSeq: 0, size: 0, bytes: 0, dropped: row.logs_dropped } },
    });
  }

  /** Reads the new lines of tasks `ids` (one query for all, at most 10000 lines a task). */
  async #syncLogs(ids: ReadonlySet<string>): Promise<void> {
    const from = [...ids].flatMap((id) => {
      const seen = this.#seenLogs.get(id);
      return seen === undefined ? [] : [{ task: id, seen }];
    });
    if (from.length === 0) return;
    const rows = await this.#sql<
      { task: string; seq: number; stream: number; time: number; text: string }[]
    >`
      SELECT l.task, l.seq, l.stream, l.time, l.text
      FROM json_to_recordset(${JSON.stringify(from)}::text::json) AS f(task text, seen integer)
      CROSS JOIN LATERAL (
        SELECT task, seq, stream, time, text FROM klym_logs
        WHERE task = f.task AND seq > f.seen ORDER BY seq LIMIT 10000
      ) l
      ORDER BY l.task, l.seq`;
    const byTask = new Map<string, JournalLine[]>();
    for (const r of rows) {
      let lines = byTask.get(r.task);
      if (!lines) byTask.set(r.task, lines = []);
      lines.push({
        seq: r.seq,
        stream: STREAMS[r.stream] ?? "stdout",
        time: r.time,
        text: JSON.parse(r.text) as string,
      });
    }
    for (const [id, lines] of byTask) {
      // Forgotten meanwhile, or read already by another sync.
      const seen = this.#seenLogs.get(id);
      if (seen === undefined) continue;
      const fresh = lines.filter((line) => line.seq > seen);
      if (fresh.length === 0) continue;
      this.#seenLogs.set(id, fresh.at(-1)!.seq);
      this.#side?.onChange({ type: "logs", taskId: id, lines: fresh });
      if (lines.length === 10000) this.#wantLogs.add(id);
    }
  }

  /** Renews this node's lease, re-reads the tasks it runs, and settles lost nodes' tasks. */
  async #renew(): Promise<void> {
    if (this.#renewing || this.#closed || !this.#side) return;
    this.#renewing = true;
    const answers = this.#answers;
    try {
      await this.#renewal(this.#side);
    } catch (error) {
      if (transient(error)) this.#unreachable(error, answers);
      else logger.warn("Cannot renew this node's lease: {error}", { error });
    } finally {
      this.#renewing = false;
    }
  }

  async #renewal(side: NodeSide): Promise<void> {
    const { slots, running } = side.stats();
    await this.#sql`
      UPDATE klym_nodes SET renewed_at = now(), alive = true, slots = ${slots},
        running = ${running.length}
      WHERE id = ${this.node}`;
    this.#answered();
    // A beat to this node's own listener: notifications come in commit order, so once it is
    // heard, every change numbered up to its `rev` (but those still being committed) was heard.
    this.#checkHearing();
    const beat = ++this.#beat;
    const listening = this.#listening;
    await this.#sql`SELECT pg_notify(${CHANNEL}, json_build_object('n', ${this.node}::text,
      't', 'b', 'k', ${this.#token}::text, 'beat', ${beat}::int,
      'rev', (SELECT last_value FROM klym_rev))::text)`;
    if (listening && this.#listening) this.#unheardBeats.push(beat);
    if (this.#sweepUntil > 0) {
      const last = Date.now() > this.#sweepUntil;
      await this.#sweepListeners();
      if (last) this.#sweepUntil = 0;
    }
    // A renewal that came late (the database, the network or this node stalled) starts the count
    // again from its answer: the other nodes were likely cut off too, and get a whole lease from
    // now to renew before this one judges them.
    if (Date.now() - this.#lastRenewal > this.#options.leaseMs / 2) {
      this.#reachableSince = Date.now();
    }
    this.#lastRenewal = Date.now();
    // A read that failed (PostgreSQL away) left its ids wanted: this renewal asks again.
    if (this.#wantTasks.size > 0 || this.#wantLogs.size > 0 || this.#catchUpFrom !== undefined) {
      this.#scheduleSync();
    }
    // Other nodes add to the current hour (and, just after it turns, the one before).
    await this.#readSpend(currentHour(Date.now()) - HOUR_MS);
    if (running.length > 0) {
      const rows = await this.#sql.unsafe<TaskRow[]>(
        `SELECT ${TASK_COLUMNS} FROM klym_tasks WHERE id = ANY($1)
         AND (status <> 'running' OR node IS DISTINCT FROM $2)`,
        [[...running], this.node],
      );
      for (const row of rows) this.#deliver(row);
    }
    await this.#putBackUnheardIdle();
    // The steps after the lease's own write can come late too (held as it was not): such a
    // renewal is late as a whole, and the others get a whole lease from now as well.
    if (Date.now() - this.#lastRenewal > this.#options.leaseMs / 2) {
      this.#reachableSince = Date.now();
    }
    // Only a node that has itself renewed on time for a whole lease, on a database up for a
    // whole lease, judges others: after an outage every node's renewal is old, none is lost.
    if (Date.now() - this.#reachableSince >= this.#options.leaseMs) await this.#reap();
  }

  async #reap(): Promise<void> {
    const lease = this.#options.leaseMs;
    const now = Date.now();
    const count = await this.#sql.begin(async (sql) => {
      await this.#lockCluster(sql);
      const lost = await sql<{ id: string }[]>`
        UPDATE klym_nodes SET alive = false
        WHERE alive AND id <> ${this.node}
          AND renewed_at < now() - make_interval(secs => ${lease / 1000})
          AND pg_postmaster_start_time() < now() - make_interval(secs => ${lease / 1000})
        RETURNING id`;
      if (lost.length === 0) return 0;
      logger.warn("Nodes {nodes} stopped renewing their lease: their tasks are settled", {
        nodes: lost.map((n) => n.id).join(", "),
      });
      return await this.#reapNodes(sql, lost.map((n) => n.id), now, "lost");
    });
    // Rows changed by this node are not notified back to it: read them now.
    if (count > 0) {
      this.#wantCatchUp();
      this.#scheduleSync();
    }
  }

  claim(_pick: () => string, maxRunningPerPrincipal: number): Promise<Claim | undefined> {
    if (this.#closed || !this.#reachable) return Promise.resolve(undefined);
    // The claim counts this node's running tasks from the table: its own changes (a cancel that
    // just freed the slot) land first, or the claim sees the slot still taken and nothing asks again.
    this.#claimsAsked++;
    return this.durable().catch(() => {}).then(() => this.#claim(maxRunningPerPrincipal))
      .finally(() => this.#claimsAsked--);
  }

  #claim(maxRunningPerPrincipal: number): Promise<Claim | undefined> {
    if (this.#closed || !this.#reachable) return Promise.resolve(undefined);
    const now = Date.now();
    const answers = this.#answers;
    let putBack: TaskRow[] = [];
    return this.#sql.begin(async (sql) => {
      await this.#lockCluster(sql);
      // The registry asks one claim at a time: with no other under way, this is the moment.
      if (this.#claimsAsked === 1) putBack = await this.#putBackUnheard(sql, now);
      const rows = await sql.unsafe<TaskRow[]>(
        `WITH running AS (
           SELECT owner, count(*) AS n, count(*) FILTER (WHERE node = $1) AS here
           FROM klym_tasks WHERE status = 'running' GROUP BY owner
         ), next AS (
           SELECT q.id FROM klym_tasks q LEFT JOIN running r ON r.owner = q.owner
           WHERE q.status = 'queued' AND coalesce(r.here, 0) < $3
             AND (q.pinned IS NULL OR q.pinned = $1)
           ORDER BY coalesce(r.n, 0), q.no
           LIMIT 1 FOR UPDATE OF q SKIP LOCKED
         )
         UPDATE klym_tasks t SET status = 'running', node = $1, attempt = t.attempt + 1,
           started_at = $2, rev = nextval('klym_rev')
         FROM next WHERE t.id = next.id
         RETURNING ${columns("t.")}`,
        [this.node, now, maxRunningPerPrincipal],
      );
      const row = rows[0];
      if (!row) return undefined;
      await sql`
        INSERT INTO klym_task_events (task, time, status, node, attempt)
        VALUES (${row.id}, ${now}, 'running', ${this.node}, ${row.attempt})`;
      await this.#notify(sql, "t", row.id);
      return row;
    }).then((row) => {
      this.#answered();
      for (const back of putBack) this.#deliver(back);
      if (!row) return undefined;
      this.#fences.set(row.id, { node: this.node, attempt: row.attempt });
      this.#deliver(row);
      return { id: row.id, attempt: row.attempt };
    }, (error) => {
      if (transient(error)) this.#unreachable(error, answers);
      else this.#failed(error);
      return undefined;
    });
  }

  /**
   * Puts back in the queue the tasks the database holds running on this node under a claim this
   * node never heard of: a claim committed whose answer was lost with its connection (PostgreSQL
   * restarting or a connection cut as it answered). No process of this node ever ran them, so the
   * claim is undone, its attempt with it. Runs under the cluster's lock while no other claim of
   * this node is under way: every claim it made before was answered, and each it heard of is
   * fenced. Returns the rows put back, to be handed over once committed.
   */
  async #putBackUnheard(sql: Tx, now: number): Promise<TaskRow[]> {
    const held = await sql<{ id: string; attempt: number }[]>`
      SELECT id, attempt FROM klym_tasks WHERE status = 'running' AND node = ${this.node}`;
    const ids = held.filter((row) => this.#fences.get(row.id)?.attempt !== row.attempt)
      .map((row) => row.id);
    if (ids.length === 0) return [];
    const rows = await sql.unsafe<TaskRow[]>(
      `UPDATE klym_tasks SET status = 'queued', node = NULL, attempt = attempt - 1,
         rev = nextval('klym_rev')
       WHERE id = ANY($1) AND status = 'running' AND node = $2
       RETURNING ${TASK_COLUMNS}`,
      [ids, this.node],
    );
    for (const row of rows) {
      await sql`
        INSERT INTO klym_task_events (task, time, status, node, attempt)
        VALUES (${row.id}, ${now}, 'queued', ${this.node}, ${row.attempt})`;
      await this.#notify(sql, "t", row.id);
    }
    if (rows.length > 0) {
      logger.warn("Tasks {ids} were claimed by this node without its hearing it: queued again", {
        ids: rows.map((row) => row.id).join(", "),
      });
    }
    return rows;
  }

  /**
   * `#putBackUnheard` between claims, for a node that claims nothing now (its own queue empty):
   * a claim asked meanwhile waits for the lock, and one answered meanwhile is fenced.
   */
  async #putBackUnheardIdle(): Promise<void> {
    if (this.#claimsAsked > 0) return;
    const rows = await this.#sql.begin(async (sql): Promise<TaskRow[]> => {
      await this.#lockCluster(sql);
      return this.#claimsAsked > 0 ? [] : await this.#putBackUnheard(sql, Date.now());
    });
    for (const row of rows as TaskRow[]) this.#deliver(row);
  }

  admitted(task: JournalTask): void {
    this.#seenLogs.set(task.id, 0);
    const bytes = (task.prompt?.length ?? 0) + 512;
    this.#push({
      bytes,
      ids: [task.id],
      run: (sql) =>
        sql.begin(async (sql) => {
          const queuedAt = task.state.status === "queued" ? task.state.queuedAt : null;
          await sql`
            INSERT INTO klym_tasks (id, owner, kind, model, prompt, params, timeout_s, created_at,
              status, queued_at, retryable, pinned)
            VALUES (${task.id}, ${task.owner}, ${task.kind}, ${task.model ?? null},
              ${task.prompt === undefined ? null : JSON.stringify(task.prompt)},
              ${JSON.stringify(task.params)}, ${task.timeoutS}, ${task.createdAt},
              ${task.state.status}, ${queuedAt}, ${task.retryable ?? false},
              ${task.pinned ?? null})
            ON CONFLICT (id) DO NOTHING`;
          await sql`
            INSERT INTO klym_task_events (task, time, status)
            VALUES (${task.id}, ${task.createdAt}, ${task.state.status})`;
          await this.#notify(sql, "t", task.id);
        }),
    });
  }

  changed(task: JournalTask): void {
    this.#flushOf(task.id);
    this.#pendingProgress.delete(task.id);
    const state = task.state;
    const mine = task.node !== undefined && task.node === this.node;
    const error = "error" in state ? JSON.stringify(state.error) : null;
    const time = "finishedAt" in state
      ? state.finishedAt
      : state.status === "running"
      ? state.startedAt
      : state.queuedAt;
    const attempt = task.attempt ?? 0;
    this.#push({
      bytes: 512 + (state.status === "succeeded" ? state.resultJson.length : 0),
      ids: [task.id],
      run: async (sql) => {
        const written = await sql.begin(async (sql) => {
          const values = {
            status: state.status,
            started_at: "startedAt" in state ? state.startedAt ?? null : null,
            finished_at: "finishedAt" in state ? state.finishedAt : null,
            code_started_at: task.codeStartedAt ?? null,
            progress: task.progress ? JSON.stringify(task.progress) : null,
            result: state.status === "succeeded" ? state.resultJson : null,
            error,
          };
          // The owner's writes are fenced by node and attempt; a cancel from anywhere only by
          // status (a task still queued, or running on whichever node).
          if (state.status === "running" && mine) {
            // The claim recorded the run; this is the time its process was handed the task.
            const rows = await sql`
              UPDATE klym_tasks SET started_at = ${values.started_at}, rev = nextval('klym_rev')
              WHERE id = ${task.id} AND node = ${this.node} AND attempt = ${attempt}
                AND status = 'running'
              RETURNING id`;
            if (rows.length > 0) await this.#notify(sql, "t", task.id);
            return rows.length > 0;
          }
          const rows = mine
            ? await sql`
              UPDATE klym_tasks SET ${sql(values)}, rev = nextval('klym_rev')
              WHERE id = ${task.id} AND node = ${this.node} AND attempt = ${attempt}
                AND status = 'running'
              RETURNING id`
            : await sql`
              UPDATE klym_tasks SET ${sql(values)}, rev = nextval('klym_rev')
              WHERE id = ${task.id} AND status IN ('queued', 'running')
                AND ${state.status} IN ('cancelled', 'interrupted')
              RETURNING id`;
          if (rows.length === 0) return false;
          await sql`
            INSERT INTO klym_task_events (task, time, status, detail, node, attempt)
            VALUES (${task.id}, ${time}, ${state.status}, ${error}, ${task.node ?? null},
              ${attempt})`;
          await this.#notify(sql, "t", task.id);
          return true;
        });
        if (!written) {
          // Fenced out: another node or the reaper changed it first. Its row is the truth.
          this.#wantTasks.add(task.id);
          queueMicrotask(() => this.#scheduleSync());
        }
      },
    });
  }

  progressed(task: JournalTask): void {
    if (this.#closed) return;
    this.#pendingProgress.set(task.id, task);
    this.#schedule();
  }

  logged(taskId: string, lines: readonly JournalLine[], keepFrom: number, dropped: number): void {
    if (this.#closed) return;
    let bytes = 0;
    for (const line of lines) bytes += line.text.length + LINE_OVERHEAD_BYTES;
    if (this.#bufferBytes + bytes > this.#options.bufferBytes) {
      // PostgreSQL has been away long enough to fill the buffer: these lines are lost.
      this.#droppedLines += lines.length;
      return;
    }
    let pending = this.#pendingLogs.get(taskId);
    if (!pending) {
      pending = { lines: [], keepFrom, dropped, node: undefined, attempt: 0, bytes: 0 };
      this.#pendingLogs.set(taskId, pending);
    }
    for (const line of lines) pending.lines.push(line);
    pending.keepFrom = keepFrom;
    pending.dropped = dropped;
    pending.bytes += bytes;
    this.#bufferBytes += bytes;
    const last = lines.at(-1)?.seq;
    if (last !== undefined) this.#seenLogs.set(taskId, last);
    this.#schedule();
  }

  saved(save: JournalSave): void {
    this.#push({
      bytes: save.reply.length + 256,
      ids: [],
      run: (sql) =>
        sql`
          INSERT INTO klym_saves (task, seq, tool, ok, time, reply)
          VALUES (${save.taskId}, ${save.seq}, ${save.tool}, ${save.ok}, ${save.time},
            ${JSON.stringify(save.reply)})
          ON CONFLICT DO NOTHING`.then(() => {}),
    });
  }

  spent(spend: JournalSpend): void {
    this.#spend.add(spend);
    this.#spendWrites++;
    this.#push({
      bytes: 256,
      ids: [],
      run: (sql) =>
        sql`
          INSERT INTO klym_model_spend
            (hour, owner, model, calls, refusals, input_tokens, output_tokens)
          VALUES (${spend.hour}, ${spend.owner}, ${spend.model}, ${spend.calls}, ${spend.refusals},
            ${spend.inputTokens}, ${spend.outputTokens})
          ON CONFLICT (hour, owner, model) DO UPDATE SET
            calls = klym_model_spend.calls + EXCLUDED.calls,
            refusals = klym_model_spend.refusals + EXCLUDED.refusals,
            input_tokens = klym_model_spend.input_tokens + EXCLUDED.input_tokens,
            output_tokens = klym_model_spend.output_tokens + EXCLUDED.output_tokens`
          .then(() => {}),
      done: () => this.#spendWrites--,
    });
  }

  readSpend(since: number, owner?: string): JournalSpend[] {
    return this.#spend.read(since, owner);
  }

  forgetSpend(before: number): void {
    this.#spend.forgetBefore(before);
    this.#push({
      bytes: 64,
      ids: [],
      run: (sql) => sql`DELETE FROM klym_model_spend WHERE hour < ${before}`.then(() => {}),
    });
  }

  readLogs(taskId: string, cursor: number, max: number): JournalLine[] {
    const lines = this.#restoredLines.get(taskId) ?? [];
    const out: JournalLine[] = [];
    for (const line of lines) {
      if (out.length >= max) break;
      if (line.seq > cursor) out.push(line);
    }
    return out;
  }

  readSaves(taskId: string): JournalSave[] {
    const saves = this.#restoredSaves.get(taskId) ?? [];
    this.#restoredSaves.delete(taskId);
    return saves;
  }

  forget(ids: readonly string[]): void {
    for (const id of ids) {
      this.#restoredLines.delete(id);
      this.#seenLogs.delete(id);
      this.#fences.delete(id);
      this.#revOf.delete(id);
      this.#readAfterWrite.delete(id);
    }
    const list = [...ids];
    this.#push({
      bytes: 64 * list.length,
      ids: [],
      run: (sql) =>
        sql.begin(async (sql) => {
          await sql`DELETE FROM klym_logs WHERE task = ANY(${list})`;
          await sql`DELETE FROM klym_saves WHERE task = ANY(${list})`;
          await sql`DELETE FROM klym_task_events WHERE task = ANY(${list})`;
          await sql`DELETE FROM klym_tasks WHERE id = ANY(${list})`;
        }),
    });
  }

  compact(): void {}

  flush(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    for (const id of [...this.#pendingLogs.keys(), ...this.#pendingProgress.keys()]) {
      this.#flushOf(id);
    }
  }

  durable(): Promise<void> {
    if (this.#done >= this.#enqueued) return Promise.resolve();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const timer = setTimeout(() => {
      this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
      reject(
        new KlymError(
          "STORE_UNAVAILABLE",
          `PostgreSQL (${this.where}) did not confirm the write within ${this.#options.waitMs} ms (KLYM_SHARED_WAIT_MS): ${
            this.#lastProblem ?? "no answer"
          }; the change is kept and written when it answers, check its status again then`,
        ),
      );
    }, this.#options.waitMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    this.#waiters.push({ upTo: this.#enqueued, resolve: done });
    return promise;
  }

  unavailable(): string | undefined {
    if (this.#reachable) return undefined;
    return `PostgreSQL (${this.where}) does not answer (${
      this.#lastProblem ?? "no answer"
    }); tasks already admitted go on, start it again once it is back (GET /healthz says when)`;
  }

  health(): JournalHealth {
    const waiting = this.#ops.length + this.#pendingLogs.size + this.#pendingProgress.size;
    return {
      ok: this.#reachable && this.#error === undefined,
      store: this.where,
      node: this.node,
      reachable: this.#reachable,
      waiting,
      ...(this.#droppedLines > 0 ? { droppedLines: this.#droppedLines } : {}),
      ...(!this.#reachable ? { error: this.unavailable()! } : {}),
      ...(this.#error === undefined ? {} : { error: this.#error, failedWrites: this.#failures }),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.flush();
    clearInterval(this.#renewTimer);
    // Give the queue a moment to drain while PostgreSQL answers; what is left is lost.
    if (this.#done < this.#enqueued && this.#reachable) await this.durable().catch(() => {});
    this.#closed = true;
    this.#retryTimer?.wake();
    // Every step is bounded: a node stops even while PostgreSQL does not answer.
    const bounded = async (work: Promise<unknown> | undefined) =>
      await settleWithin(
        Promise.resolve(work),
        this.#options.waitMs,
        "A step of closing this node",
        "KLYM_SHARED_WAIT_MS",
      ).catch(() => {});
    await bounded(this.#syncing);
    await bounded(this.#listener?.end({ timeout: 0 }));
    if (this.#reachable) await bounded(this.#sweepListeners());
    if (this.#reachable) {
      await bounded(
        this.#sql`UPDATE klym_nodes SET alive = false, running = 0 WHERE id = ${this.node}`,
      );
    }
    await this.#sql.end({ timeout: 1 }).catch(() => {});
  }

  #schedule(): void {
    this.#flushTimer ??= setTimeout(() => {
      this.#flushTimer = undefined;
      this.flush();
    }, FLUSH_MS);
  }

  /** Moves a task's waiting lines and progress into the write queue. */
  #flushOf(id: string): void {
    const pending = this.#pendingLogs.get(id);
    const progress = this.#pendingProgress.get(id);
    this.#pendingLogs.delete(id);
    this.#pendingProgress.delete(id);
    if (!pending && !progress) return;
    const fence = this.#fences.get(id) ?? { node: "", attempt: -1 };
    if (pending) this.#bufferBytes -= pending.bytes;
    this.#push({
      bytes: pending?.bytes ?? 256,
      ids: [],
      run: (sql) =>
        sql.begin(async (sql) => {
          // Lines and progress of the task's current claim only: a zombie's are dropped.
          if (pending && pending.lines.length > 0) {
            const rows = JSON.stringify(pending.lines.map((l) => ({
              seq: l.seq,
              stream: l.stream === "stderr" ? 1 : 0,
              time: l.time,
              text: JSON.stringify(l.text),
            })));
            await sql`
              INSERT INTO klym_logs (task, seq, stream, time, text)
              SELECT ${id}, x.seq, x.stream, x.time, x.text
              FROM json_to_recordset(${rows}::text::json)
                AS x(seq integer, stream smallint, time double precision, text text)
              WHERE EXISTS (SELECT 1 FROM klym_tasks
                WHERE id = ${id} AND node = ${fence.node} AND attempt = ${fence.attempt})
              ON CONFLICT DO NOTHING`;
          }
          if (pending) {
            await sql`DELETE FROM klym_logs WHERE task = ${id} AND seq < ${pending.keepFrom}`;
            await sql`UPDATE klym_tasks SET logs_dropped = ${pending.dropped} WHERE id = ${id}
              AND node = ${fence.node} AND attempt = ${fence.attempt}`;
            await this.#notify(sql, "l", id);
          }
          if (progress) {
            const rows = await sql`
              UPDATE klym_tasks SET
                progress = ${progress.progress ? JSON.stringify(progress.progress) : null},
                code_started_at = ${progress.codeStartedAt ?? null}, rev = nextval('klym_rev')
              WHERE id = ${id} AND node = ${fence.node} AND attempt = ${fence.attempt}
                AND status = 'running'
              RETURNING id`;
            if (rows.length > 0) await this.#notify(sql, "t", id);
          }
        }),
    });
  }

  #push(op: Op): void {
    if (this.#closed) return;
    this.#ops.push(op);
    this.#enqueued++;
    this.#bufferBytes += op.bytes;
    for (const id of op.ids) this.#pendingOf.set(id, (this.#pendingOf.get(id) ?? 0) + 1);
    void this.#drain();
  }

  /** Writes the queue in order; a write PostgreSQL cannot take now is retried until it can. */
  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    let backoff = 50;
    while (this.#ops.length > 0 && !this.#closed) {
      const op = this.#ops[0]!;
      const answers = this.#answers;
      try {
        await op.run(this.#sql);
        this.#answered();
        backoff = 50;
      } catch (error) {
        if (transient(error) && !this.#closed) {
          this.#unreachable(error, answers);
          await this.#pause(backoff);
          backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
          continue;
        }
        if (!this.#closed) this.#failed(error);
      }
      this.#ops.shift();
      op.done?.();
      this.#bufferBytes -= op.bytes;
      for (const id of op.ids) {
        const left = (this.#pendingOf.get(id) ?? 1) - 1;
        if (left > 0) this.#pendingOf.set(id, left);
        else {
          this.#pendingOf.delete(id);
          if (this.#readAfterWrite.delete(id)) {
            this.#wantTasks.add(id);
            this.#scheduleSync();
          }
        }
      }
      this.#done++;
      this.#waiters = this.#waiters.filter((w) => {
        if (w.upTo > this.#done) return true;
        w.resolve();
        return false;
      });
    }
    this.#draining = false;
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#retryTimer = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#retryTimer = { timer, wake };
    });
  }

  #answered(): void {
    this.#answers++;
    if (this.#reachable) return;
    this.#reachable = true;
    this.#reachableSince = Date.now();
    this.#lastProblem = undefined;
    logger.info("PostgreSQL answers again ({store}); waiting writes go on", { store: this.where });
    this.#wantCatchUp();
    this.#scheduleSync();
    // Writes waiting out a backoff go now: PostgreSQL has just answered.
    this.#retryTimer?.wake();
    void this.#drain();
  }

  /**
   * A query sent when `answers` answers had come failed with a transient error: PostgreSQL is
   * unreachable when a new connection to it failed, and nothing answered since the query was sent.
   */
  #unreachable(error: unknown, answers: number): void {
    if (answers < this.#answers || !cannotConnect(error)) return;
    this.#lastProblem = message(error);
    if (!this.#reachable) return;
    this.#reachable = false;
    logger.warn("PostgreSQL does not answer ({store}): {error}; tasks go on, writes wait", {
      store: this.where,
      error: this.#lastProblem,
    });
  }

  #failed(error: unknown): void {
    this.#failures++;
    if (this.#error === undefined) {
      logger.error("A write to the shared store failed (it is lost): {error}", { error });
    }
    this.#error = message(error);
  }
}

/** A task row as the journal's record of it. */
function taskOf(row: TaskRow): JournalTask {
  let state: TaskState;
  const startedAt = row.started_at ?? undefined;
  const finishedAt = row.finished_at ?? Date.now();
  switch (row.status) {
    case "queued":
      state = { status: "queued", queuedAt: row.queued_at ?? row.created_at };
      break;
    case "running":
      state = {
        status: "running",
        queuedAt: row.queued_at ?? row.created_at,
        startedAt: startedAt ?? row.created_at,
      };
      break;
    case "succeeded":
      state = { status: "succeeded", startedAt, finishedAt, resultJson: row.result ?? "null" };
      break;
    default:
      state = {
        status: row.status as "failed",
        startedAt,
        finishedAt,
        error: row.error
          ? JSON.parse(row.error)
          : { code: row.status, message: `The task ended ${row.status}` },
      };
  }
  return {
    id: row.id,
    owner: row.owner,
    kind: row.kind,
    model: row.model ?? undefined,
    prompt: row.prompt === null ? undefined : JSON.parse(row.prompt),
    params: JSON.parse(row.params),
    timeoutS: row.timeout_s,
    createdAt: row.created_at,
    state,
    progress: row.progress ? JSON.parse(row.progress) : undefined,
    codeStartedAt: row.code_started_at ?? undefined,
    node: row.node ?? undefined,
    attempt: row.attempt,
    retryable: row.retryable,
    pinned: row.pinned ?? undefined,
  };
}
