/**
 * The book of tasks: every task the server knows, newest last, and retention of finished ones
 * within a count, an age and a byte budget. Each change is written through to the journal, and at
 * start the tasks a previous process recorded are read back from it (their logs stay there and are
 * read on demand). The registry schedules; this keeps the records.
 *
 * Retention is shared fairly: beyond KLYM_MAX_FINISHED the principal holding the most finished
 * tasks gives way, beyond KLYM_RETAINED_BYTES the one holding the most bytes, each its own oldest.
 * So one principal's many (or large) tasks never make another's results vanish before their time;
 * a principal alone loses its oldest first, as before.
 */
import type { Config } from "../config.ts";
import type {
  Claim,
  Journal,
  JournalLine,
  JournalLogsInfo,
  JournalSave,
  NodeSide,
} from "../journal/journal.ts";
import type { ModelBudget, SavedSummary } from "../protocol.ts";
import { utf8Length } from "../text.ts";
import { LINE_OVERHEAD_BYTES, type LogBuffer, type LogPage, type TaskLogs } from "./log_buffer.ts";
import {
  isTerminal,
  RESULT_IN_JOURNAL_BYTES,
  resultAsBytes,
  resultKeptElsewhere,
  TASK_STATUSES,
  type TaskState,
  type TaskStatus,
} from "./task_state.ts";

export interface Progress {
  readonly done: number;
  readonly total?: number;
  readonly message?: string;
}

export interface TaskRecord {
  readonly id: string;
  /** The principal that started the task; no other sees, reads or cancels it. */
  readonly owner: string;
  readonly kind: string;
  /** A custom kind's module, resolved at admission; built-in kinds have none. */
  readonly modulePath: string | undefined;
  readonly model: string | undefined;
  readonly prompt: string | undefined;
  readonly params: Record<string, unknown>;
  readonly budget: ModelBudget;
  readonly timeoutS: number;
  readonly createdAt: number;
  readonly logs: TaskLogs;
  state: TaskState;
  progress: Progress | undefined;
  /** When the task's own code began to run (after process start and module load). */
  codeStartedAt: number | undefined;
  /** The task's last saves to grynya (at most MAX_SAVES_KEPT), each with grynya's reply. */
  saves: SavedSummary[];
  /** With a shared store: the node running it, and which run this is (writes are fenced by both). */
  node?: string | undefined;
  attempt?: number;
  /** Its kind declares itself retryable: a lost node's run of it is queued again. */
  retryable?: boolean;
  /** The node it must run on: it asks the starting client's own model, connected there. */
  pinned?: string | undefined;
}

/** Saves kept per task in `saves`, the oldest dropped first. */
export const MAX_SAVES_KEPT = 100;

/** A task admitted by this process: its logs are held in memory while it may still write. */
export type LiveTask = TaskRecord & { readonly logs: LogBuffer };

export type RetentionLimits = Pick<Config, "retentionS" | "maxFinished" | "retainedBytes">;

/** How often expired tasks are forgotten and the journal's free space is given back. */
export const SWEEP_MS = 1000;

/** Calls `tick` every `ms` until the returned function is called (tests pass one they drive). */
export type Every = (ms: number, tick: () => void) => () => void;

export const everyInterval: Every = (ms, tick) => {
  const id = setInterval(tick, ms);
  return () => clearInterval(id);
};

/** Bytes a task holds in the server: its inputs, its logs, its result or error. */
export function retainedBytes(task: TaskRecord): number {
  const state = task.state;
  return utf8Length(task.prompt ?? "") + utf8Length(JSON.stringify(task.params)) +
    task.logs.bytes +
    (state.status === "succeeded" ? utf8Length(state.resultJson) : 0) +
    ("error" in state ? utf8Length(state.error.message) : 0);
}

export interface TaskStoreOptions {
  readonly limits: RetentionLimits;
  /** The clock retention reads (`Date.now` by default). */
  readonly now?: () => number;
  /** What runs the retention sweep (an interval by default); tests pass one they drive. */
  readonly every?: Every;
}

export class TaskStore {
  readonly #tasks = new Map<string, TaskRecord>();
  /** Finished tasks' ids, oldest ending first (insertion order). */
  readonly #finished = new Set<string>();
  /** Each principal's finished tasks, oldest ending first, and the bytes they hold. */
  readonly #finishedOf = new Map<string, { ids: Set<string>; bytes: number }>();
  /** What each finished task holds, measured once when it finished, and their sum. */
  readonly #bytesOf = new Map<string, number>();
  #finishedBytes = 0;
  #stopSweeper: (() => void) | undefined;

  readonly #journal: Journal;
  readonly #limits: RetentionLimits;
  readonly #now: () => number;

  /** Reads back what the journal holds (interrupting what was alive) and applies retention. */
  constructor(journal: Journal, options: TaskStoreOptions) {
    this.#journal = journal;
    this.#limits = options.limits;
    this.#now = options.now ?? Date.now;
    const every = options.every ?? everyInterval;
    const restored = journal.restore(this.#now());
    for (const task of restored) {
      this.#tasks.set(task.id, {
        ...task,
        modulePath: undefined,
        budget: { calls: 0, tokens: 0 },
        logs: new JournalLogs(journal, { id: task.id, info: task.logs }),
        saves: journal.readSaves(task.id).slice(-MAX_SAVES_KEPT).map((save) => ({
          seq: save.seq,
          tools: save.tool.split(","),
          ok: save.ok,
          time: new Date(save.time).toISOString(),
          reply: save.reply,
        })),
      });
    }
    const ended = restored.filter((t) => "finishedAt" in t.state) as (typeof restored[number] & {
      state: { finishedAt: number };
    })[];
    ended.sort((a, b) => a.state.finishedAt - b.state.finishedAt);
    for (const task of ended) this.#finish(task.id);
    this.#sweep();
    this.#stopSweeper = every(SWEEP_MS, () => this.#sweep());
  }

  add(task: LiveTask): void {
    this.#tasks.set(task.id, task);
    this.#journal.admitted(task);
  }

  /**
   * Takes a record as it stands elsewhere (another node's change, read from the shared store):
   * nothing is written; a finished one counts against retention.
   */
  adopt(task: TaskRecord): void {
    this.#tasks.set(task.id, task);
    if (!isTerminal(task.state)) return;
    this.#finish(task.id);
    this.#trimFinished();
  }

  /** This node's id in a shared store; `undefined` on one machine. */
  get node(): string | undefined {
    return this.#journal.node;
  }

  /** The next queued task for this node (see `Journal.claim`). */
  claim(pick: () => string, maxRunningPerPrincipal: number): Claim | Promise<Claim | undefined> {
    return this.#journal.claim(pick, maxRunningPerPrincipal);
  }

  /** Resolves once every change so far is committed (at once on one machine). */
  durable(): Promise<void> {
    return this.#journal.durable();
  }

  /** Why tasks cannot be admitted now, else `undefined`. */
  unavailable(): string | undefined {
    return this.#journal.unavailable();
  }

  /** Starts hearing of changes made elsewhere (a shared store). */
  attach(side: NodeSide): void {
    this.#journal.attach(side);
  }

  get(id: string): TaskRecord | undefined {
    return this.#tasks.get(id);
  }

  /** Newest first; with `owner`, only that principal's tasks. */
  list(status?: TaskStatus, limit = 50, owner?: string): TaskRecord[] {
    const out: TaskRecord[] = [];
    const all = [...this.#tasks.values()];
    for (let i = all.length - 1; i >= 0 && out.length < limit; i--) {
      const task = all[i]!;
      if (owner !== undefined && task.owner !== owner) continue;
      if (!status || task.state.status === status) out.push(task);
    }
    return out;
  }

  counts(owner?: string): Record<TaskStatus, number> {
    const counts = Object.fromEntries(TASK_STATUSES.map((s) => [s, 0])) as Record<
      TaskStatus,
      number
    >;
    for (const task of this.#tasks.values()) {
      if (owner === undefined || task.owner === owner) counts[task.state.status]++;
    }
    return counts;
  }

  /**
   * The task's status changed; a finished one now counts against retention, and a large result
   * the journal now holds is dropped from memory (read from the journal when asked).
   */
  changed(task: TaskRecord): void {
    this.#journal.changed(task);
    if (!isTerminal(task.state)) return;
    this.#finish(task.id);
    this.#keepResultOffHeap(task);
    this.#trimFinished();
  }

  /**
   * A large result goes to the journal when it keeps results, else to bytes. The journal only once
   * it reads back the very result written: a failed write keeps it here.
   */
  #keepResultOffHeap(task: TaskRecord): void {
    const state = task.state;
    const journal = this.#journal;
    if (state.status !== "succeeded") return;
    if (state.resultJson.length < RESULT_IN_JOURNAL_BYTES) return;
    if (!journal.readResult) {
      task.state = resultAsBytes(state);
      return;
    }
    if (journal.readResult(task.id) !== state.resultJson) return;
    task.state = resultKeptElsewhere(state, () => journal.readResult!(task.id));
  }

  /** Its progress or code start changed. */
  progressed(task: TaskRecord): void {
    this.#journal.progressed(task);
  }

  /** Lines were appended to a live task's logs. */
  logged(task: LiveTask, lines: readonly JournalLine[]): void {
    this.#journal.logged(task.id, lines, task.logs.firstSeq, task.logs.dropped);
  }

  /** A save into the graph, with grynya's reply. */
  saved(save: JournalSave): void {
    this.#journal.saved(save);
  }

  /** Stops the sweeper, writes what waits and closes the journal. */
  async close(): Promise<void> {
    this.#stopSweeper?.();
    this.#stopSweeper = undefined;
    await this.#journal.close();
  }

  /**
   * Counts a finished task against retention. Its size is measured once, here: measuring every
   * finished task again at each end or sweep would let many large ones pin the event loop. Lines a
   * task writes while it winds down are not counted (its log buffer bounds them).
   */
  #finish(id: string): void {
    const task = this.#tasks.get(id)!;
    if (this.#finished.has(id)) return;
    const bytes = retainedBytes(task);
    this.#finished.add(id);
    this.#bytesOf.set(id, bytes);
    this.#finishedBytes += bytes;
    let mine = this.#finishedOf.get(task.owner);
    if (!mine) this.#finishedOf.set(task.owner, mine = { ids: new Set(), bytes: 0 });
    mine.ids.add(id);
    mine.bytes += bytes;
  }

  /**
   * Forgets finished tasks beyond KLYM_MAX_FINISHED and KLYM_RETAINED_BYTES: each time the oldest
   * of the principal holding the most tasks (or bytes), so another principal's results stay.
   */
  #trimFinished(): void {
    const forgotten: string[] = [];
    while (this.#finished.size > 0) {
      const overCount = this.#finished.size > this.#limits.maxFinished;
      if (!overCount && this.#finishedBytes <= this.#limits.retainedBytes) break;
      let most: { ids: Set<string>; bytes: number } | undefined;
      for (const held of this.#finishedOf.values()) {
        const [a, b] = overCount ? [held.ids.size, most?.ids.size] : [held.bytes, most?.bytes];
        if (b === undefined || a > b) most = held;
      }
      const id = most!.ids.values().next().value!;
      this.#unfinish(id);
      forgotten.push(id);
    }
    this.#forget(forgotten);
  }

  #sweep(): void {
    const cutoff = this.#now() - this.#limits.retentionS * 1000;
    const forgotten: string[] = [];
    for (const id of this.#finished) {
      const task = this.#tasks.get(id);
      if (task && "finishedAt" in task.state && task.state.finishedAt > cutoff) break;
      forgotten.push(id);
    }
    for (const id of forgotten) this.#unfinish(id);
    this.#forget(forgotten);
    this.#trimFinished();
    this.#journal.compact();
  }

  /** Takes a finished task out of retention's books. */
  #unfinish(id: string): void {
    const bytes = this.#bytesOf.get(id) ?? 0;
    this.#finished.delete(id);
    this.#bytesOf.delete(id);
    this.#finishedBytes -= bytes;
    const owner = this.#tasks.get(id)?.owner;
    const mine = owner === undefined ? undefined : this.#finishedOf.get(owner);
    if (!mine) return;
    mine.ids.delete(id);
    mine.bytes -= bytes;
    if (mine.ids.size === 0) this.#finishedOf.delete(owner!);
  }

  #forget(ids: string[]): void {
    if (ids.length === 0) return;
    for (const id of ids) this.#tasks.delete(id);
    this.#journal.forget(ids);
  }
}

/** The logs of a task recorded by a previous process, read from the journal when asked. */
class JournalLogs implements TaskLogs {
  constructor(
    readonly journal: Journal,
    readonly task: { readonly id: string; readonly info: JournalLogsInfo },
  ) {}

  get info(): JournalLogsInfo {
    return this.task.info;
  }

  get dropped(): number {
    return this.info.dropped;
  }
  get size(): number {
    return this.info.size;
  }
  get lastSeq(): number {
    return this.info.lastSeq;
  }
  get bytes(): number {
    return this.info.bytes;
  }

  read(cursor: number, max: number, maxBytes = Infinity): LogPage {
    // At least one row is read even for `max` 0: the next kept line tells what was missed.
    const rows = this.journal.readLogs(this.task.id, cursor, Math.max(1, max));
    const lines: LogPage["lines"] = [];
    let bytes = 0;
    for (const row of rows.slice(0, max)) {
      if (maxBytes !== Infinity) {
        bytes += utf8Length(JSON.stringify(row.text)) + LINE_OVERHEAD_BYTES;
        if (bytes > maxBytes && lines.length > 0) break;
      }
      lines.push({ ...row, time: new Date(row.time).toISOString() });
    }
    const nextKept = rows[0]?.seq ?? this.info.lastSeq + 1;
    const missed = Math.max(0, nextKept - (cursor + 1));
    return { lines, nextCursor: lines.at(-1)?.seq ?? Math.max(cursor, nextKept - 1), missed };
  }
}
