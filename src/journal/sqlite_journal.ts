/**
 * The journal in one SQLite file (through `node:sqlite`), in WAL mode with
 * `synchronous=NORMAL`: a commit survives the process being killed (not a power cut). Admissions
 * and status changes are written at once; log lines and progress wait in a batch written at most
 * `FLUSH_MS` later (or sooner when it grows), so a flood of output costs one transaction per batch.
 *
 * One process owns a file: it is opened with `locking_mode=EXCLUSIVE` and written to at once, so the
 * operating system's lock keeps any other process out until this one closes it or dies (a dead
 * owner's lock goes with it). The owner writes its pid next to the file (`<file>.owner`) so that a
 * refused second Klym can say who holds it. The folder and the files are private (0700 and 0600:
 * see `private_files.ts`); text columns are read back whole, NUL bytes included.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { getLogger } from "@logtape/logtape";
import type { Failure } from "../protocol.ts";
import {
  RESULT_IN_JOURNAL_BYTES,
  resultKeptElsewhere,
  type TaskState,
} from "../tasks/task_state.ts";
import { LINE_OVERHEAD_BYTES } from "../tasks/log_buffer.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "./schema.ts";
import { isKlymError, KlymError } from "../errors.ts";
import {
  createPrivateFile,
  OWNER_SUFFIX,
  privateFiles,
  privateFolder,
  readOwnerFile,
  writeOwnerFile,
} from "./private_files.ts";
import {
  type Journal,
  type JournalHealth,
  type JournalLine,
  type JournalSave,
  type JournalSpend,
  type JournalTask,
  type RestoredTask,
} from "./journal.ts";
import { OneMachineJournal } from "./one_machine.ts";

const logger = getLogger(["klym", "journal"]);

/** Longest a log line or a progress change waits before it is written. */
const FLUSH_MS = 50;
/** A batch this large is written at once, without waiting for the timer. */
const FLUSH_LINES = 8192;
/** Rows per multi-row INSERT of log lines. */
const ROWS_PER_INSERT = 64;
/** Compaction runs when at least this many pages are free, and a quarter of the file. */
const COMPACT_MIN_FREE_PAGES = 256;

const STREAMS = ["stdout", "stderr"] as const;

export interface SqliteJournalOptions {
  /** This process's id, written next to the file for a refused second Klym to name. */
  readonly pid?: number;
  /** Caps the file (in pages): a stand-in for a full disk in tests. */
  readonly maxPageCount?: number;
  /** The file is in the default state folder: that folder is Klym's whatever else it holds. */
  readonly defaultFolder?: boolean;
}

interface PendingLogs {
  lines: JournalLine[];
  keepFrom: number;
  dropped: number;
}

interface TaskRow {
  no: number;
  id: string;
  owner: string;
  kind: string;
  model: string | null;
  prompt: string | Uint8Array | null;
  params: string;
  timeout_s: number;
  created_at: number;
  status: string;
  queued_at: number | null;
  started_at: number | null;
  code_started_at: number | null;
  finished_at: number | null;
  progress: string | null;
  /** Only when shorter than RESULT_IN_JOURNAL_BYTES; longer ones are read when asked. */
  result: string | null;
  result_bytes: number | null;
  error: string | null;
  logs_dropped: number;
}

/** `undefined` becomes SQL NULL. */
const sql = (value: string | number | undefined): SQLInputValue => value ?? null;

/**
 * A free-text column read back whole. SQLite keeps every byte of a bound string, but node:sqlite
 * reads TEXT as a C string, cut at its first NUL: a value holding one is read as its bytes instead.
 */
const whole = (column: string) =>
  `CASE WHEN instr(${column}, char(0)) > 0 THEN CAST(${column} AS BLOB) ELSE ${column} END ` +
  `AS ${column}`;

const utf8 = new TextDecoder();

/** A column read through `whole`: its text. */
function text<T extends string | null>(value: T | Uint8Array): T | string {
  return value instanceof Uint8Array ? utf8.decode(value) : value;
}

export class SqliteJournal extends OneMachineJournal implements Journal {
  readonly where: string;
  readonly #db: DatabaseSync;
  readonly #ownerFile: string;
  /** Each known task's number in the file. */
  readonly #numbers = new Map<string, number>();
  /** Highest line number already deleted below, per task number. */
  readonly #trimmed = new Map<number, number>();
  #pendingLogs = new Map<number, PendingLogs>();
  #pendingProgress = new Map<number, JournalTask>();
  #pendingLines = 0;
  /** When the oldest record of the waiting batch came (for the write lag metric). */
  #pendingSince: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #error: string | undefined;
  #failures = 0;
  #closed = false;
  readonly #statements: ReturnType<typeof prepare>;

  /** Opens (creating when missing) and migrates the file; throws `JOURNAL_*` saying why not. */
  constructor(readonly file: string, options: SqliteJournalOptions = {}) {
    super();
    this.where = file;
    this.#ownerFile = `${file}${OWNER_SUFFIX}`;
    try {
      privateFolder(file, options.defaultFolder ?? false);
    } catch (error) {
      throw refusal(file, `its folder cannot be created or made private (${message(error)})`);
    }
    try {
      privateFiles(file, true);
      createPrivateFile(file);
    } catch (error) {
      throw refusal(
        file,
        isKlymError(error, "STATE_UNSAFE")
          ? error.message
          : `it cannot be created (${message(error)})`,
      );
    }
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(file, { timeout: 0 });
    } catch (error) {
      throw refusal(file, `it cannot be opened (${message(error)})`);
    }
    this.#db = db;
    try {
      // auto_vacuum takes effect only in a new file, before its first table.
      db.exec("PRAGMA auto_vacuum = INCREMENTAL");
      db.exec("PRAGMA locking_mode = EXCLUSIVE");
      db.exec("PRAGMA journal_mode = WAL");
      // The first write takes the exclusive lock, held until close.
      db.exec("BEGIN EXCLUSIVE");
      db.exec("COMMIT");
      db.exec("PRAGMA synchronous = NORMAL");
      db.exec("PRAGMA journal_size_limit = 16777216");
      this.#migrate();
      if (options.maxPageCount) db.exec(`PRAGMA max_page_count = ${options.maxPageCount}`);
      this.#statements = prepare(db);
      // SQLite made its -wal (and any other file) with the journal's mode; make sure of it.
      privateFiles(file, false);
    } catch (error) {
      db.close();
      if (isKlymError(error, "JOURNAL_TAKEN", "JOURNAL_UNUSABLE")) throw error;
      if (isKlymError(error, "STATE_UNSAFE")) throw refusal(file, error.message);
      throw this.#openProblem(error);
    }
    try {
      writeOwnerFile(
        this.#ownerFile,
        JSON.stringify({ pid: options.pid ?? Deno.pid, since: new Date().toISOString() }) + "\n",
      );
    } catch (error) {
      if (isKlymError(error, "STATE_UNSAFE")) {
        db.close();
        throw refusal(file, error.message);
      }
      // Only a refused second Klym's message needs it.
      logger.warn("Cannot write the journal's owner file {path}: {error}", {
        path: this.#ownerFile,
        error: message(error),
      });
    }
  }

  #migrate(): void {
    const db = this.#db;
    const version = Number(
      (db.prepare("PRAGMA user_version").get() as { user_version: number })
        .user_version,
    );
    if (version > SCHEMA_VERSION) {
      throw refusal(
        this.file,
        `it was written by a newer Klym (schema version ${version}, this one knows up to ${SCHEMA_VERSION})`,
      );
    }
    if (version === SCHEMA_VERSION) return;
    db.exec("BEGIN");
    try {
      for (const migration of MIGRATIONS.slice(version)) migration(db);
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      db.exec("COMMIT");
    } catch (error) {
      db.exec("ROLLBACK");
      throw error;
    }
  }

  #openProblem(error: unknown): KlymError {
    const text = message(error);
    if (/locked|busy/i.test(text)) {
      let owner = "another process";
      try {
        const { pid, since } = JSON.parse(readOwnerFile(this.#ownerFile) ?? "");
        if (Number.isSafeInteger(pid) && typeof since === "string") {
          owner = `another Klym (pid ${pid}, running since ${since})`;
        }
      } catch {
        // No owner file: say what is known.
      }
      return refusal(
        this.file,
        `${owner} is using it (${text}); stop that one first`,
        "JOURNAL_TAKEN",
      );
    }
    if (/not a database|malformed|corrupt/i.test(text)) {
      return refusal(
        this.file,
        `it is damaged or not a Klym journal (${text}); move it away to start afresh`,
      );
    }
    return refusal(this.file, `it cannot be used (${text})`);
  }

  restore(now: number): RestoredTask[] {
    try {
      return this.#restore(now);
    } catch (error) {
      throw isKlymError(error, "JOURNAL_TAKEN", "JOURNAL_UNUSABLE")
        ? error
        : this.#openProblem(error);
    }
  }

  #restore(now: number): RestoredTask[] {
    const s = this.#statements;
    const rows = s.allTasks.all() as unknown as TaskRow[];
    const logInfo = new Map<number, { last: number; n: number; bytes: number }>();
    for (const row of s.logInfo.all() as { task: number; last: number; n: number; b: number }[]) {
      logInfo.set(row.task, {
        last: row.last,
        n: row.n,
        bytes: row.b + row.n * LINE_OVERHEAD_BYTES,
      });
    }
    const restored: RestoredTask[] = [];
    const interrupted: [number, string, Failure][] = [];
    for (const row of rows) {
      this.#numbers.set(row.id, row.no);
      const info = logInfo.get(row.no) ?? { last: 0, n: 0, bytes: 0 };
      let state: TaskState;
      const startedAt = row.started_at ?? undefined;
      if (row.status === "queued" || row.status === "running") {
        const lastLine = info.last > 0
          ? (s.lastLineTime.get(row.no, info.last) as { time: number } | undefined)?.time
          : undefined;
        const error: Failure = {
          code: "interrupted",
          message: `Klym stopped while this task was ${row.status}: its process ended without ` +
            `shutting down${
              lastLine === undefined ? "" : ` (the last log line kept is from ${iso(lastLine)})`
            }, and the task was found ${row.status} when Klym started again at ${iso(now)}. ` +
            "Its logs up to then are kept; start it again if it is still needed",
        };
        state = { status: "interrupted", startedAt, finishedAt: now, error };
        interrupted.push([row.no, row.status, error]);
      } else if (row.status === "succeeded") {
        const finishedAt = row.finished_at ?? now;
        state = (row.result_bytes ?? 0) >= RESULT_IN_JOURNAL_BYTES
          ? resultKeptElsewhere(
            { status: "succeeded", startedAt, finishedAt },
            () => this.readResult(row.id),
          )
          : { status: "succeeded", startedAt, finishedAt, resultJson: row.result ?? "null" };
      } else {
        state = {
          status: row.status as "failed",
          startedAt,
          finishedAt: row.finished_at ?? now,
          error: row.error
            ? JSON.parse(row.error)
            : { code: row.status, message: `The task ended ${row.status}` },
        };
      }
      restored.push({
        id: row.id,
        owner: row.owner,
        kind: row.kind,
        model: row.model ?? undefined,
        prompt: text(row.prompt) ?? undefined,
        params: JSON.parse(row.params),
        timeoutS: row.timeout_s,
        createdAt: row.created_at,
        state,
        progress: row.progress ? JSON.parse(row.progress) : undefined,
        codeStartedAt: row.code_started_at ?? undefined,
        logs: {
          lastSeq: info.last,
          size: info.n,
          bytes: info.bytes,
          dropped: Math.max(row.logs_dropped, info.last - info.n),
        },
      });
    }
    if (interrupted.length > 0) {
      this.#transaction(() => {
        for (const [no, , error] of interrupted) {
          s.interrupt.run(now, JSON.stringify(error), no);
          s.event.run(no, now, "interrupted", JSON.stringify(error));
        }
      });
      logger.warn("{count} tasks were interrupted when the previous Klym ended", {
        count: interrupted.length,
      });
    }
    return restored;
  }

  admitted(task: JournalTask): void {
    const s = this.#statements;
    this.#transaction(() => {
      const { lastInsertRowid } = s.insertTask.run(
        task.id,
        task.owner,
        task.kind,
        sql(task.model),
        sql(task.prompt),
        JSON.stringify(task.params),
        task.timeoutS,
        task.createdAt,
        task.state.status,
        task.state.status === "queued" ? task.state.queuedAt : null,
      );
      const no = Number(lastInsertRowid);
      s.event.run(no, task.createdAt, task.state.status, null);
      this.#numbers.set(task.id, no);
    });
  }

  changed(task: JournalTask): void {
    const no = this.#numbers.get(task.id);
    if (no === undefined) return;
    const s = this.#statements;
    const state = task.state;
    const time = "finishedAt" in state
      ? state.finishedAt
      : state.status === "running"
      ? state.startedAt
      : state.queuedAt;
    const error = "error" in state ? JSON.stringify(state.error) : null;
    this.#pendingProgress.delete(no);
    this.#transaction(() => {
      this.#writePending();
      s.updateState.run(
        state.status,
        sql("startedAt" in state ? state.startedAt : undefined),
        sql("finishedAt" in state ? state.finishedAt : undefined),
        sql(task.codeStartedAt),
        task.progress ? JSON.stringify(task.progress) : null,
        state.status === "succeeded" ? state.resultJson : null,
        error,
        no,
      );
      s.event.run(no, time, state.status, error);
    });
  }

  progressed(task: JournalTask): void {
    const no = this.#numbers.get(task.id);
    if (no === undefined) return;
    this.#pendingProgress.set(no, task);
    this.#schedule();
  }

  logged(taskId: string, lines: readonly JournalLine[], keepFrom: number, dropped: number): void {
    const no = this.#numbers.get(taskId);
    if (no === undefined || this.#closed) return;
    let pending = this.#pendingLogs.get(no);
    if (!pending) this.#pendingLogs.set(no, pending = { lines: [], keepFrom, dropped });
    for (const line of lines) pending.lines.push(line);
    pending.keepFrom = keepFrom;
    pending.dropped = dropped;
    this.#pendingLines += lines.length;
    if (this.#pendingLines >= FLUSH_LINES) this.flush();
    else this.#schedule();
  }

  saved(save: JournalSave): void {
    const no = this.#numbers.get(save.taskId);
    if (no === undefined) return;
    this.#transaction(() => {
      this.#statements.insertSave.run(
        no,
        save.seq,
        save.tool,
        save.ok ? 1 : 0,
        save.time,
        save.reply,
      );
    });
  }

  spent(spend: JournalSpend): void {
    this.#transaction(() => {
      this.#statements.addSpend.run(
        spend.hour,
        spend.owner,
        spend.model,
        spend.calls,
        spend.refusals,
        spend.inputTokens,
        spend.outputTokens,
      );
    });
  }

  readSpend(since: number, owner?: string): JournalSpend[] {
    const rows =
      (owner === undefined
        ? this.#statements.readSpend.all(since)
        : this.#statements.readSpendOf.all(since, owner)) as {
          owner: string;
          model: string;
          calls: number;
          refusals: number;
          input_tokens: number;
          output_tokens: number;
        }[];
    return rows.map((r) => ({
      hour: since,
      owner: r.owner,
      model: r.model,
      calls: r.calls,
      refusals: r.refusals,
      inputTokens: r.input_tokens,
      outputTokens: r.output_tokens,
    }));
  }

  forgetSpend(before: number): void {
    this.#transaction(() => this.#statements.forgetSpend.run(before));
  }

  readLogs(taskId: string, cursor: number, max: number): JournalLine[] {
    const no = this.#numbers.get(taskId);
    if (no === undefined || max <= 0) return [];
    if (this.#pendingLogs.has(no)) this.flush();
    const rows = this.#statements.readLogs.all(no, cursor, max) as {
      seq: number;
      stream: number;
      time: number;
      text: string | Uint8Array;
    }[];
    return rows.map((r) => ({
      seq: r.seq,
      stream: STREAMS[r.stream] ?? "stdout",
      time: r.time,
      text: text(r.text),
    }));
  }

  readResult(taskId: string): string | undefined {
    const no = this.#numbers.get(taskId);
    if (no === undefined || this.#closed) return undefined;
    try {
      const row = this.#statements.readResult.get(no) as { result: string | null } | undefined;
      return row?.result ?? undefined;
    } catch (error) {
      logger.warn("Cannot read task {taskId}'s result from the journal: {error}", {
        taskId,
        error: message(error),
      });
      return undefined;
    }
  }

  readSaves(taskId: string): JournalSave[] {
    const no = this.#numbers.get(taskId);
    if (no === undefined) return [];
    const rows = this.#statements.readSaves.all(no) as {
      seq: number;
      tool: string | Uint8Array;
      ok: number;
      time: number;
      reply: string | Uint8Array;
    }[];
    return rows.map((r) => ({
      taskId,
      seq: r.seq,
      tool: text(r.tool),
      ok: r.ok === 1,
      time: r.time,
      reply: text(r.reply),
    }));
  }

  forget(ids: readonly string[]): void {
    const numbers = ids.flatMap((id) => {
      const no = this.#numbers.get(id);
      this.#numbers.delete(id);
      return no === undefined ? [] : [no];
    });
    if (numbers.length === 0) return;
    const s = this.#statements;
    for (const no of numbers) {
      this.#pendingLogs.delete(no);
      this.#pendingProgress.delete(no);
      this.#trimmed.delete(no);
    }
    this.#transaction(() => {
      for (const no of numbers) {
        s.deleteLogs.run(no);
        s.deleteEvents.run(no);
        s.deleteSaves.run(no);
        s.deleteTask.run(no);
      }
    });
  }

  compact(): void {
    if (this.#closed) return;
    try {
      const free = Number(
        (this.#db.prepare("PRAGMA freelist_count").get() as { freelist_count: number })
          .freelist_count,
      );
      const pages = Number(
        (this.#db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count,
      );
      if (free < COMPACT_MIN_FREE_PAGES || free * 4 < pages) return;
      // Each step frees one page: `exec` would take one step only.
      this.#db.prepare("PRAGMA incremental_vacuum").all();
      this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch (error) {
      this.#failed(error);
    }
  }

  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#closed || (this.#pendingLogs.size === 0 && this.#pendingProgress.size === 0)) return;
    this.#transaction(() => this.#writePending());
  }

  health(): JournalHealth {
    const since = this.#pendingSince === undefined ? {} : { pendingSince: this.#pendingSince };
    return this.#error === undefined ? { ok: true, store: this.where, ...since } : {
      ok: false,
      store: this.where,
      error: this.#error,
      failedWrites: this.#failures,
      ...since,
    };
  }

  close(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    // Removed while the lock is still held, so a Klym that takes the file next keeps its own.
    try {
      Deno.removeSync(this.#ownerFile);
    } catch {
      // Already gone.
    }
    try {
      this.#db.close();
    } catch (error) {
      logger.warn("Closing the journal {file} failed: {error}", {
        file: this.file,
        error: message(error),
      });
    }
  }

  #schedule(): void {
    this.#pendingSince ??= Date.now();
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, FLUSH_MS);
  }

  /** Writes the waiting batch; call inside a transaction. */
  #writePending(): void {
    const s = this.#statements;
    const pendingLogs = this.#pendingLogs;
    const pendingProgress = this.#pendingProgress;
    this.#pendingLogs = new Map();
    this.#pendingProgress = new Map();
    this.#pendingLines = 0;
    this.#pendingSince = undefined;
    for (const [no, pending] of pendingLogs) {
      const rows: SQLInputValue[] = [];
      for (const line of pending.lines) {
        if (line.seq < pending.keepFrom) continue;
        rows.push(no, line.seq, line.stream === "stderr" ? 1 : 0, line.time, line.text);
        if (rows.length === ROWS_PER_INSERT * 5) {
          s.insertLogsMany.run(...rows);
          rows.length = 0;
        }
      }
      for (let i = 0; i < rows.length; i += 5) s.insertLog.run(...rows.slice(i, i + 5));
      const trimmed = this.#trimmed.get(no) ?? 1;
      if (pending.keepFrom > trimmed) {
        s.trimLogs.run(no, pending.keepFrom);
        this.#trimmed.set(no, pending.keepFrom);
      }
      s.updateDropped.run(pending.dropped, no);
    }
    for (const [no, task] of pendingProgress) {
      s.updateProgress.run(
        sql(task.codeStartedAt),
        task.progress ? JSON.stringify(task.progress) : null,
        no,
      );
    }
  }

  #transaction(write: () => void): void {
    if (this.#closed) return;
    try {
      this.#db.exec("BEGIN");
      try {
        write();
        this.#db.exec("COMMIT");
      } catch (error) {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw error;
      }
    } catch (error) {
      this.#failed(error);
    }
  }

  /**
   * A write failed: tasks go on, and what it held is lost. The first error is logged; health keeps
   * showing the latest one (and how many writes failed) until Klym restarts.
   */
  #failed(error: unknown): void {
    const first = this.#error === undefined;
    this.#failures++;
    this.#error = `Cannot write the journal ${this.file}: ${message(error)}`;
    if (first) {
      logger.error(
        "{error}; tasks keep running, but what happens until writes succeed again may be lost at a restart",
        { error: this.#error },
      );
    }
  }
}

const SPEND_SELECT = "SELECT owner, model, sum(calls) AS calls, sum(refusals) AS refusals, " +
  "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens FROM model_spend ";
const SPEND_GROUP = "GROUP BY owner, model ORDER BY owner, model";

function prepare(db: DatabaseSync) {
  const st = (text: string): StatementSync => db.prepare(text);
  return {
    allTasks: st(
      `SELECT no, id, owner, kind, model, ${whole("prompt")}, params, timeout_s, created_at, ` +
        "status, queued_at, " +
        "started_at, code_started_at, finished_at, progress, " +
        `CASE WHEN length(CAST(result AS BLOB)) < ${RESULT_IN_JOURNAL_BYTES} THEN result END ` +
        "AS result, length(CAST(result AS BLOB)) AS result_bytes, error, logs_dropped " +
        "FROM tasks ORDER BY no",
    ),
    readResult: st("SELECT result FROM tasks WHERE no = ?"),
    logInfo: st(
      "SELECT task, max(seq) AS last, count(*) AS n, sum(length(CAST(text AS BLOB))) AS b " +
        "FROM logs GROUP BY task",
    ),
    lastLineTime: st("SELECT time FROM logs WHERE task = ? AND seq = ?"),
    interrupt: st(
      "UPDATE tasks SET status = 'interrupted', finished_at = ?, error = ? WHERE no = ?",
    ),
    insertTask: st(
      "INSERT INTO tasks (id, owner, kind, model, prompt, params, timeout_s, created_at, status, " +
        "queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    event: st("INSERT INTO task_events (task, time, status, detail) VALUES (?, ?, ?, ?)"),
    updateState: st(
      "UPDATE tasks SET status = ?, started_at = ?, finished_at = ?, code_started_at = ?, " +
        "progress = ?, result = ?, error = ? WHERE no = ?",
    ),
    updateProgress: st("UPDATE tasks SET code_started_at = ?, progress = ? WHERE no = ?"),
    updateDropped: st("UPDATE tasks SET logs_dropped = ? WHERE no = ?"),
    insertLog: st(
      "INSERT OR IGNORE INTO logs (task, seq, stream, time, text) VALUES (?, ?, ?, ?, ?)",
    ),
    insertLogsMany: st(
      "INSERT OR IGNORE INTO logs (task, seq, stream, time, text) VALUES " +
        Array(ROWS_PER_INSERT).fill("(?, ?, ?, ?, ?)").join(", "),
    ),
    trimLogs: st("DELETE FROM logs WHERE task = ? AND seq < ?"),
    readLogs: st(
      `SELECT seq, stream, time, ${whole("text")} FROM logs WHERE task = ? AND seq > ? ` +
        "ORDER BY seq LIMIT ?",
    ),
    insertSave: st(
      "INSERT OR REPLACE INTO saves (task, seq, tool, ok, time, reply) VALUES (?, ?, ?, ?, ?, ?)",
    ),
    readSaves: st(
      `SELECT seq, ${whole("tool")}, ok, time, ${whole("reply")} FROM saves WHERE task = ? ` +
        "ORDER BY seq",
    ),
    deleteLogs: st("DELETE FROM logs WHERE task = ?"),
    deleteEvents: st("DELETE FROM task_events WHERE task = ?"),
    deleteSaves: st("DELETE FROM saves WHERE task = ?"),
    deleteTask: st("DELETE FROM tasks WHERE no = ?"),
    addSpend: st(
      "INSERT INTO model_spend (hour, owner, model, calls, refusals, input_tokens, output_tokens) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hour, owner, model) DO UPDATE SET " +
        "calls = calls + excluded.calls, refusals = refusals + excluded.refusals, " +
        "input_tokens = input_tokens + excluded.input_tokens, " +
        "output_tokens = output_tokens + excluded.output_tokens",
    ),
    readSpend: st(SPEND_SELECT + "WHERE hour >= ? " + SPEND_GROUP),
    readSpendOf: st(SPEND_SELECT + "WHERE hour >= ? AND owner = ? " + SPEND_GROUP),
    forgetSpend: st("DELETE FROM model_spend WHERE hour < ?"),
  };
}

function refusal(
  file: string,
  why: string,
  code: "JOURNAL_TAKEN" | "JOURNAL_UNUSABLE" = "JOURNAL_UNUSABLE",
): KlymError {
  return new KlymError(
    code,
    `Cannot use KLYM_STATE file "${file}": ${why}. Set KLYM_STATE to another file, or to memory to keep nothing`,
  );
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const iso = (ms: number) => new Date(ms).toISOString();
