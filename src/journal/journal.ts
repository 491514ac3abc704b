/**
 * The journal records what happens to tasks so that a restart loses nothing: each task's record
 * and status changes, its log lines, progress, result or error, and its saves into the graph. It
 * decides nothing: the registry schedules and calls it as things happen. Writes never throw (a
 * failed write is reported by `health()` and logged once); reads and opening may.
 */
import type { LogStream } from "../protocol.ts";
import type { TaskState } from "../tasks/task_state.ts";

export interface JournalProgress {
  readonly done: number;
  readonly total?: number;
  readonly message?: string;
}

/** A task as the journal records it. */
export interface JournalTask {
  readonly id: string;
  /** The principal that started the task. */
  readonly owner: string;
  readonly kind: string;
  readonly model: string | undefined;
  readonly prompt: string | undefined;
  readonly params: Record<string, unknown>;
  readonly timeoutS: number;
  readonly createdAt: number;
  readonly state: TaskState;
  readonly progress: JournalProgress | undefined;
  readonly codeStartedAt: number | undefined;
  /** The node running it (a shared store only; `undefined` while queued or on one machine). */
  readonly node?: string | undefined;
  /** Runs so far: 1 for its first, more when its kind is retryable and a node was lost. */
  readonly attempt?: number;
  /** Its kind declares itself retryable: a lost node's run of it is queued again. */
  readonly retryable?: boolean;
  /**
   * The node it must run on (a shared store only): it asks the starting client's own model, and
   * that client is connected to this node.
   */
  readonly pinned?: string | undefined;
}

/** One log line with the server's receipt time (ms since the epoch). */
export interface JournalLine {
  readonly seq: number;
  readonly stream: LogStream;
  readonly time: number;
  readonly text: string;
}

/** What a restored task's logs hold: numbers only, the lines stay in the journal. */
export interface JournalLogsInfo {
  /** The highest line number recorded (0 when none). */
  readonly lastSeq: number;
  /** Lines kept. */
  readonly size: number;
  /** Bytes kept, text plus a per-line overhead, as the log buffer counts them. */
  readonly bytes: number;
  /** Lines lost to the per-task log limit (and to the end of the previous process). */
  readonly dropped: number;
}

export interface RestoredTask extends JournalTask {
  readonly logs: JournalLogsInfo;
}

/** One save a task made into grynya's graph, with grynya's own reply. */
export interface JournalSave {
  readonly taskId: string;
  readonly seq: number;
  readonly tool: string;
  readonly ok: boolean;
  readonly time: number;
  readonly reply: string;
}

/** Model spend of one principal on one model within one hour (or, read back, a window). */
export interface JournalSpend {
  /** The hour's start (epoch ms); read back, the window's. */
  readonly hour: number;
  readonly owner: string;
  readonly model: string;
  /** Calls answered or failed, and calls Klym refused (budget, concurrency). */
  readonly calls: number;
  readonly refusals: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
}

export interface JournalHealth {
  readonly ok: boolean;
  /** `memory`, or the state file's path. */
  readonly store: string;
  /** A shared store: this node's id, whether the database answers, and writes waiting for it. */
  readonly node?: string;
  readonly reachable?: boolean;
  readonly waiting?: number;
  /** Log lines dropped because the buffer of writes waiting for the database was full. */
  readonly droppedLines?: number;
  /** The latest write error, once any write failed (it stays until a restart). */
  readonly error?: string;
  /** Writes that failed (each loses what it held). */
  readonly failedWrites?: number;
  /** When the oldest record waiting in the batch came (epoch ms); unset when none waits. */
  readonly pendingSince?: number;
}

/** A task a node took from the queue, with the attempt its writes are fenced by. */
export interface Claim {
  readonly id: string;
  readonly attempt: number;
}

/** What a shared store reports that happened elsewhere (another node, a lost node's reaper). */
export type StoreChange =
  | { readonly type: "task"; readonly task: RestoredTask }
  | { readonly type: "logs"; readonly taskId: string; readonly lines: readonly JournalLine[] };

/** What the registry tells a shared store about this node, and how it hears of changes. */
export interface NodeSide {
  onChange(change: StoreChange): void;
  /** Slots, running tasks and the ids of the tasks this node runs, for the node's lease row. */
  stats(): { readonly slots: number; readonly running: readonly string[] };
}

/** A node of a shared store, as its lease row says. */
export interface NodeInfo {
  readonly id: string;
  /** Where other nodes reach it (KLYM_NODE_URL), if it said. */
  readonly url: string | undefined;
  readonly alive: boolean;
  readonly slots: number;
  readonly running: number;
  /** Its last lease renewal (ms since the epoch). */
  readonly renewedAt: number;
  /** How long ago that was, by the store's clock (the one leases are judged by). */
  readonly renewedAgoMs: number;
  readonly startedAt: number;
}

export interface Journal {
  /** `memory`, the state file's path, or the shared store's (a URL without its password). */
  readonly where: string;
  /** This node's id when the store is shared by several nodes; `undefined` on one machine. */
  readonly node: string | undefined;
  /**
   * Takes the next queued task for this node. On one machine that is the registry's own choice,
   * `pick` (its fair queue's), at once. A shared store chooses across the cluster (the principal with
   * the fewest tasks running on all nodes first, its oldest task first, skipping principals at
   * `maxRunningPerPrincipal` on this node) and answers later: `undefined` when none.
   */
  claim(pick: () => string, maxRunningPerPrincipal: number): Claim | Promise<Claim | undefined>;
  /** Resolves once every write made so far is committed; rejects when that takes too long. */
  durable(): Promise<void>;
  /** Why tasks cannot be admitted now (a shared store out of reach), else `undefined`. */
  unavailable(): string | undefined;
  /** The nodes sharing the store (a shared store; `[]` on one machine). */
  nodes(): Promise<NodeInfo[]>;
  /** Starts reporting changes made elsewhere and renewing this node's lease (shared stores). */
  attach(node: NodeSide): void;
  /**
   * The tasks a previous process recorded, oldest first. Those that were queued or running are
   * now `interrupted` (recorded as such before this returns). Called once, at start. A shared
   * store returns every node's tasks, and interrupts (or queues again, when retryable) only those
   * this node ran: queued tasks and other nodes' stay as they are.
   */
  restore(now: number): RestoredTask[];
  /** A task was admitted (written at once). */
  admitted(task: JournalTask): void;
  /** A task's status changed (written at once, after the log lines still waiting). */
  changed(task: JournalTask): void;
  /** A task's progress or code start changed (written with the next batch). */
  progressed(task: JournalTask): void;
  /**
   * Lines appended to a task's logs (written in batches, at most ~100 ms later). Lines numbered
   * below `keepFrom` were dropped for space and need not be kept; `dropped` counts them all.
   */
  logged(taskId: string, lines: readonly JournalLine[], keepFrom: number, dropped: number): void;
  /** A save into the graph, with grynya's reply. */
  saved(save: JournalSave): void;
  /** Adds to the spend of `spend.owner` on `spend.model` in `spend.hour` (written at once). */
  spent(spend: JournalSpend): void;
  /**
   * Spend per principal and model of the hours from `since` on (epoch ms), summed; with `owner`,
   * that principal's only. Sorted by principal, then model.
   */
  readSpend(since: number, owner?: string): JournalSpend[];
  /** Forgets the spend of hours before `before` (epoch ms). */
  forgetSpend(before: number): void;
  /** Lines with `seq > cursor` of a task, at most `max`, in order. */
  readLogs(taskId: string, cursor: number, max: number): JournalLine[];
  /** The saves of a task, in order. */
  readSaves(taskId: string): JournalSave[];
  /**
   * The result a succeeded task's `changed` wrote, read back; `undefined` when it holds none. Only
   * a journal that keeps results outside the server's memory has it (SQLite): the store then
   * drops large results from memory and reads them here when asked.
   */
  readResult?(taskId: string): string | undefined;
  /** Forgets tasks (retention): their records, logs and saves. */
  forget(ids: readonly string[]): void;
  /** Gives unused space back to the file system when enough of it is free. Never throws. */
  compact(): void;
  /** Writes whatever waits in the batch now. */
  flush(): void;
  health(): JournalHealth;
  /** Flushes and releases the store (and its lock). */
  close(): void | Promise<void>;
}
