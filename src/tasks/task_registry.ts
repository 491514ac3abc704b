/**
 * The server's scheduler: the queue (fair across principals, `FairQueue`), each principal's share
 * of it and of the running slots, deadlines and cancel. The records (and their retention and
 * journal) are the `TaskStore`'s. Every status change goes through `#settle`/`#launch`, which call
 * `transition`, so each task reaches exactly one terminal state.
 * Nothing a task sends can throw out of here: a bad event ends that task, not the server.
 */
import { getLogger } from "@logtape/logtape";
import { KlymError } from "../errors.ts";
import type { Failure, GrynyaSettings } from "../protocol.ts";
import type { LlmService } from "../llm/llm_service.ts";
import type { Sampler } from "../llm/sampling.ts";
import type { Config } from "../config.ts";
import type { Journal, JournalLine, RestoredTask, StoreChange } from "../journal/journal.ts";
import { MemoryJournal } from "../journal/memory_journal.ts";
import { LogBuffer } from "./log_buffer.ts";
import { isTerminal, type TaskStatus, transition } from "./task_state.ts";
import type { KindHold, ProcessPool } from "./process_pool.ts";
import type { ProcessEvent, ProcessExit, TaskProcess } from "./task_process.ts";
import type { KindCatalog } from "./kind_catalog.ts";
import { type AdmissionLimits, admit, modelBudget, type StartRequest } from "./admission.ts";
import { ModelBroker, type ModelLimits } from "./model_broker.ts";
import { FairQueue } from "./fair_queue.ts";
import { observeAll, type TaskObserver } from "./task_observer.ts";
import { utf8Length } from "../text.ts";

export type { StartRequest } from "./admission.ts";
import { TaskEvents } from "./task_events.ts";
import {
  type Every,
  type LiveTask,
  MAX_SAVES_KEPT,
  type TaskRecord,
  TaskStore,
} from "./task_store.ts";

export { type Progress, retainedBytes, type TaskRecord } from "./task_store.ts";

const logger = getLogger(["klym", "tasks"]);

export type RegistryLimits =
  & AdmissionLimits
  & ModelLimits
  & Pick<
    Config,
    | "maxConcurrent"
    | "maxQueued"
    | "maxQueuedTotal"
    | "maxQueuedBytes"
    | "maxQueuedBytesTotal"
    | "maxRunningPerPrincipal"
    | "cancelGraceMs"
    | "logLimitBytes"
    | "retentionS"
    | "maxFinished"
    | "retainedBytes"
  >;

/** A running task's process and its model calls. */
interface Running {
  readonly process: TaskProcess;
  readonly models: ModelBroker;
  /** After a clean end: stops waiting for the host to go idle (it is then killed). */
  idleWait?: ReturnType<typeof setTimeout>;
}

/** What a registry is made of; all of it stays private to the registry. */
export interface RegistryOptions {
  readonly limits: RegistryLimits;
  readonly grynya: GrynyaSettings;
  readonly llm: LlmService;
  readonly kinds: KindCatalog;
  readonly pool: ProcessPool;
  /** The clock of every stamp and of retention (`Date.now` by default). */
  readonly now?: () => number;
  /** What runs the retention sweep (an interval by default); tests pass one they drive. */
  readonly every?: Every;
  /** Where records, logs and saves are kept (in memory by default). */
  readonly journal?: Journal;
  /** Metrics and traces: told as tasks move (nothing by default). */
  readonly observer?: TaskObserver;
}

export class TaskRegistry {
  readonly #queue = new FairQueue<LiveTask>();
  readonly #running = new Map<string, Running>();
  /**
   * Tasks whose turn in their process is not over (the process has not exited nor its host gone
   * idle), whether or not the task is still running.
   */
  readonly #slots = new Set<Promise<void>>();
  /** Of those, how many each principal holds (no entry for none). */
  readonly #slotsOf = new Map<string, number>();
  /** The starting client's sampler of each unfinished task. */
  readonly #samplers = new Map<string, Sampler>();
  #closing = false;
  /** A claim from the shared store is on its way (one at a time). */
  #claiming = false;
  /** Something changed while a claim was on its way: look at the queue again after it. */
  #claimAgain = false;
  #idle: PromiseWithResolvers<void> | undefined;
  #spawnTimer: ReturnType<typeof setTimeout> | undefined;
  /** Admissions, status and progress changes, and new log lines, for live views. */
  readonly events = new TaskEvents();
  /** The records, their retention and their journal. */
  readonly #store: TaskStore;
  readonly #limits: RegistryLimits;
  readonly #grynya: GrynyaSettings;
  readonly #llm: LlmService;
  readonly #kinds: KindCatalog;
  readonly #pool: ProcessPool;
  readonly #now: () => number;
  readonly #observer: TaskObserver;

  constructor(options: RegistryOptions) {
    this.#observer = observeAll(options.observer ? [options.observer] : []);
    this.#limits = options.limits;
    this.#grynya = options.grynya;
    this.#llm = options.llm;
    this.#kinds = options.kinds;
    this.#pool = options.pool;
    this.#now = options.now ?? Date.now;
    this.#store = new TaskStore(options.journal ?? new MemoryJournal(), {
      limits: options.limits,
      now: this.#now,
      ...(options.every ? { every: options.every } : {}),
    });
    if (this.#store.node !== undefined) this.#joinCluster();
  }

  /**
   * A node of a shared store: every unfinished task of the cluster is held live here (queued ones
   * in the fair queue, for admission's limits; others' running ones for their logs), and changes
   * made elsewhere come in through `#onChange`.
   */
  #joinCluster(): void {
    for (const task of this.#store.list(undefined, Infinity).reverse()) {
      if (isTerminal(task.state)) continue;
      const live = this.#liveOf(
        task,
        task.logs.read(0, Infinity).lines.map((line) => ({
          ...line,
          time: Date.parse(line.time),
        })),
      );
      this.#store.adopt(live);
      if (live.state.status === "queued") this.#queue.push(live.owner, live, inputBytes(live));
    }
    this.#store.attach({
      onChange: (change) => this.#onChange(change),
      stats: () => {
        // Each renewal also looks at the queue, should a notification have been missed.
        this.#pump();
        return { slots: this.#limits.maxConcurrent, running: [...this.#running.keys()] };
      },
    });
    this.#pump();
  }

  /** A record read from the shared store, held live: its logs in a buffer, its kind resolved. */
  #liveOf(task: RestoredTask | TaskRecord, lines: readonly JournalLine[] = []): LiveTask {
    let modulePath: string | undefined;
    let budget = { calls: 0, tokens: 0 };
    try {
      modulePath = this.#kinds.resolve(task.kind);
      budget = modelBudget(task.kind, task.params, this.#limits);
    } catch {
      // A kind this node does not have: its task fails here if this node claims it.
    }
    const logs = new LogBuffer(this.#limits.logLimitBytes);
    for (const line of lines) logs.appendNumbered(line);
    return {
      id: task.id,
      owner: task.owner,
      kind: task.kind,
      modulePath,
      model: task.model,
      prompt: task.prompt,
      params: task.params,
      budget,
      timeoutS: task.timeoutS,
      createdAt: task.createdAt,
      logs,
      state: task.state,
      progress: task.progress,
      codeStartedAt: task.codeStartedAt,
      saves: "saves" in task ? task.saves : [],
      node: task.node,
      attempt: task.attempt ?? 0,
      retryable: task.retryable ?? false,
      pinned: task.pinned,
    };
  }

  /** A change made elsewhere: another node's, a cancel from anywhere, the lost-node reaper. */
  #onChange(change: StoreChange): void {
    if (this.#closing) return;
    if (change.type === "logs") {
      const task = this.#store.get(change.taskId) as LiveTask | undefined;
      if (!task || this.#running.has(task.id) || !("appendNumbered" in task.logs)) return;
      for (const line of change.lines) task.logs.appendNumbered(line);
      this.events.emit({ type: "log", id: task.id, seq: task.logs.lastSeq });
      return;
    }
    const row = change.task;
    const known = this.#store.get(row.id) as LiveTask | undefined;
    if (!known) {
      const live = this.#liveOf(row);
      this.#store.adopt(live);
      if (live.state.status === "queued") this.#queue.push(live.owner, live, inputBytes(live));
      this.events.emit({ type: "task", id: live.id });
      return this.#pump();
    }
    const running = this.#running.get(row.id);
    if (running && !isTerminal(known.state)) {
      // Ours, still running here: only a change that took it from us counts (a cancel on another
      // node, or this node declared lost and its task settled or queued again elsewhere).
      const same = row.state.status === "running" && row.node === this.#store.node &&
        row.attempt === known.attempt;
      if (same) return;
      logger.info("Task {taskId} was {status} elsewhere: its process here is stopped", {
        taskId: row.id,
        status: row.state.status,
      });
      const reason = row.state.status === "cancelled" ? "cancelled" : "timed_out";
      running.models.close();
      void running.process.stop(reason, this.#limits.cancelGraceMs);
      // Queued again or running elsewhere: the task is no longer this launch's (see `#launch`).
      if (!isTerminal(row.state)) this.#running.delete(row.id);
    }
    const wasQueued = known.state.status === "queued";
    known.state = row.state;
    known.progress = row.progress;
    known.codeStartedAt = row.codeStartedAt;
    known.node = row.node;
    known.attempt = row.attempt ?? known.attempt ?? 0;
    // The starting client's model stays until the task ends or runs elsewhere (its own claim,
    // read back, keeps it).
    if (isTerminal(row.state) || row.node !== this.#store.node) this.#samplers.delete(row.id);
    if (wasQueued && row.state.status !== "queued") this.#queue.remove(known.owner, known);
    if (!wasQueued && row.state.status === "queued") {
      this.#queue.push(known.owner, known, inputBytes(known));
    }
    this.#store.adopt(known);
    this.events.emit({ type: "task", id: known.id });
    this.#updateIdle();
    this.#pump();
  }

  /** Resolves once the task's admission or cancel is committed (a shared store: within KLYM_SHARED_WAIT_MS). */
  durable(): Promise<void> {
    return this.#store.durable();
  }

  /** Admits a task and returns at once; it runs when a slot is free. */
  start(request: StartRequest): TaskRecord {
    if (this.#closing) {
      throw new KlymError("SHUTTING_DOWN", "Cannot start task: Klym is shutting down");
    }
    const unavailable = this.#store.unavailable();
    if (unavailable !== undefined) {
      throw new KlymError("STORE_UNAVAILABLE", `Cannot start task: ${unavailable}`);
    }
    const { modulePath, retryable, timeoutS, params, budget, inputBytes } = admit(
      request,
      this.#limits,
      this.#kinds,
      this.#llm,
    );
    const owner = request.owner ?? "local";
    this.#checkRoom(owner, inputBytes);
    const now = this.#now();
    const task: LiveTask = {
      id: newTaskId(now),
      owner,
      kind: request.kind,
      modulePath,
      model: request.model,
      prompt: request.prompt,
      params,
      budget,
      timeoutS,
      createdAt: now,
      logs: new LogBuffer(this.#limits.logLimitBytes),
      state: { status: "queued", queuedAt: now },
      progress: undefined,
      codeStartedAt: undefined,
      saves: [],
      attempt: 0,
      retryable,
      // The client's own model is reached through its session, which lives on this node.
      ...(request.sampler && this.#store.node !== undefined ? { pinned: this.#store.node } : {}),
    };
    this.#store.add(task);
    if (request.sampler) this.#samplers.set(task.id, request.sampler);
    this.#queue.push(owner, task, inputBytes);
    this.#observer.admitted(task, request.trace);
    this.events.emit({ type: "task", id: task.id });
    this.#pump();
    return task;
  }

  /** A task; with `owner`, only that principal's (another's is "not found", like a missing one). */
  get(id: string, owner?: string): TaskRecord {
    const task = this.#store.get(id);
    if (!task || (owner !== undefined && task.owner !== owner)) {
      throw new KlymError(
        "TASK_NOT_FOUND",
        `No task "${id}"; it never existed or was forgotten after KLYM_RETENTION_S (${this.#limits.retentionS} s), KLYM_MAX_FINISHED or KLYM_RETAINED_BYTES. list_tasks shows the known ids`,
      );
    }
    return task;
  }

  /** The principal a task belongs to; `undefined` for an unknown id. */
  ownerOf(id: string): string | undefined {
    return this.#store.get(id)?.owner;
  }

  /** Newest first; with `owner`, only that principal's tasks. */
  list(status?: TaskStatus, limit = 50, owner?: string): TaskRecord[] {
    return this.#store.list(status, limit, owner);
  }

  counts(owner?: string): Record<TaskStatus, number> {
    return this.#store.counts(owner);
  }

  /** The process ids of the running tasks. */
  runningPids(): number[] {
    return [...this.#running.values()].map((r) => r.process.pid);
  }

  /** The process id of a running task, for resource figures; `undefined` when it has none. */
  pidOf(id: string): number | undefined {
    return this.#running.get(id)?.process.pid;
  }

  /** Ends a task as `cancelled`; a finished task keeps its status (idempotent). */
  cancel(id: string, reason = "cancelled by the client", owner?: string): TaskRecord {
    const task = this.get(id, owner);
    this.#settle(task, "cancelled", { code: "cancelled", message: reason });
    return task;
  }

  /** Resolves when no task process is left (queue empty, every process exited). */
  whenIdle(): Promise<void> {
    if (this.#queue.size === 0 && this.#slots.size === 0) return Promise.resolve();
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  /** How many task processes are alive (running tasks and those still winding down). */
  get processCount(): number {
    return this.#slots.size;
  }

  /**
   * Cancels everything with reason "shutdown", waits for every task process to be gone and closes
   * the journal. A second call only waits.
   */
  async shutdown(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      clearTimeout(this.#spawnTimer);
      // With a shared store, queued tasks and other nodes' stay for the cluster.
      const shared = this.#store.node !== undefined;
      for (const task of [...this.#queue, ...this.#store.list(undefined, Infinity)]) {
        if (shared && !this.#running.has(task.id)) continue;
        this.#settle(task, "cancelled", { code: "shutdown", message: "Klym is shutting down" });
      }
    }
    await Promise.allSettled([...this.#slots]);
    await this.#pool.close();
    this.#kinds.close();
    await this.#store.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  #freeSlots(): number {
    return Math.max(0, this.#limits.maxConcurrent - this.#slots.size);
  }

  /** Free slots `owner` may take: the free ones, within its own running limit. */
  #freeSlotsOf(owner: string): number {
    const own = this.#limits.maxRunningPerPrincipal - (this.#slotsOf.get(owner) ?? 0);
    return Math.max(0, Math.min(this.#freeSlots(), own));
  }

  /**
   * Refuses a task its principal's share of the queue, or the whole queue, has no room for.
   * Tasks about to take a free slot (their process is being spawned) do not count as waiting;
   * their input bytes count until they leave the queue.
   */
  #checkRoom(owner: string, bytes: number): void {
    const full = (message: string) => new KlymError("QUEUE_FULL", `Cannot start task: ${message}`);
    const l = this.#limits;
    const mine = this.#queue.sizeOf(owner);
    if (mine >= l.maxQueued + this.#freeSlotsOf(owner)) {
      throw full(
        `principal "${owner}" has ${mine} tasks queued; its queue limit is ${l.maxQueued} (KLYM_MAX_QUEUED); wait for some to finish or cancel some`,
      );
    }
    const all = this.#queue.size;
    if (all >= l.maxQueuedTotal + this.#freeSlots()) {
      throw full(
        `${all} tasks are queued across all principals (principal "${owner}" has ${mine}), the total queue limit is ${l.maxQueuedTotal} (KLYM_MAX_QUEUED_TOTAL); wait for tasks to finish or retry later`,
      );
    }
    const myBytes = this.#queue.bytesOf(owner);
    if (myBytes + bytes > l.maxQueuedBytes) {
      throw full(
        `principal "${owner}" has ${myBytes} bytes of prompts and params queued and this task brings ${bytes}, the limit per principal is ${l.maxQueuedBytes} (KLYM_MAX_QUEUED_BYTES); wait for some to finish, cancel some or pass large data by reference`,
      );
    }
    const allBytes = this.#queue.bytes;
    if (allBytes + bytes > l.maxQueuedBytesTotal) {
      throw full(
        `${allBytes} bytes of prompts and params are queued across all principals (principal "${owner}" has ${myBytes}) and this task brings ${bytes}, the total limit is ${l.maxQueuedBytesTotal} (KLYM_MAX_QUEUED_BYTES_TOTAL); wait for tasks to finish or retry later`,
      );
    }
  }

  /**
   * Starts queued tasks while slots are free. A host kept idle for the task's principal, or a warm
   * spare, is handed its task at once; a task that needs a fresh process waits for a turn of its
   * own, one spawn per turn, so that spawning (which blocks the event loop for milliseconds) never
   * sits on the path of a client's request. The queue picks whose task goes next; a principal
   * holding its running limit is passed over.
   */
  #pump(spawnTurn = false): void {
    const mayRun = (owner: string) => this.#freeSlotsOf(owner) > 0;
    if (this.#claiming) this.#claimAgain = true;
    while (
      !this.#closing && !this.#claiming && this.#freeSlots() > 0 && this.#queue.hasNext(mayRun)
    ) {
      if (!this.#pool.hasProcessFor(this.#queue.nextPrincipal(mayRun)!)) {
        if (!spawnTurn) {
          this.#spawnSoon();
          break;
        }
        spawnTurn = false;
      }
      // One machine: the fair queue's choice, at once. A shared store chooses across the cluster.
      const claim = this.#store.claim(
        () => this.#queue.next(mayRun)!.id,
        this.#limits.maxRunningPerPrincipal,
      );
      if (!(claim instanceof Promise)) {
        this.#launch(this.#store.get(claim.id) as LiveTask, claim.attempt);
        continue;
      }
      this.#claiming = true;
      this.#claimAgain = false;
      void claim.then((claimed) => {
        this.#claiming = false;
        const task = claimed && this.#store.get(claimed.id) as LiveTask | undefined;
        // Unless a cancel came in between, the store holds it running here, or still queued when
        // the claimed row waits behind a write of ours (it is read again after): ours either way.
        const ours = task?.state.status === "queued" ||
          (task?.state.status === "running" && task.node === this.#store.node);
        if (task && claimed && ours) {
          this.#queue.remove(task.owner, task);
          // The store already holds it running: the launch below starts it from queued.
          task.state = { status: "queued", queuedAt: task.createdAt };
          this.#launch(task, claimed.attempt);
        }
        if (task || this.#claimAgain) this.#pump();
        this.#updateIdle();
      });
      break;
    }
    this.#updateIdle();
  }

  #spawnSoon(): void {
    this.#spawnTimer ??= setTimeout(() => {
      this.#spawnTimer = undefined;
      this.#pump(true);
    }, 0);
  }

  #updateIdle(): void {
    if (this.#idle && this.#queue.size === 0 && this.#slots.size === 0) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
  }

  #launch(task: LiveTask, attempt: number): void {
    if (task.state.status !== "queued") return;
    task.node = this.#store.node;
    task.attempt = attempt;
    task.state = transition(task.state, {
      status: "running",
      queuedAt: task.state.queuedAt,
      startedAt: this.#now(),
    });
    // What runs is what is checked now: the kind's files, copied where only Klym writes.
    const kind = task.modulePath === undefined ? undefined : this.#kinds.snapshot(task.kind);
    if (kind && "code" in kind) return this.#settle(task, "failed", kind);
    /** The launch's hold on its kind's snapshot, while a process of the task may read it. */
    let hold = kind;
    let process: TaskProcess;
    let prepared: KindHold | undefined;
    const spare = this.#pool.hasProcessFor(task.owner);
    try {
      ({ process, prepared } = this.#pool.acquire(task.owner, kind?.modulePath));
    } catch (error) {
      kind?.release();
      this.#settle(task, "failed", {
        code: "spawn_failed",
        message: `Cannot start the task's process: ${
          error instanceof Error ? `${error.name}: ${error.message}` : String(error)
        }`,
      });
      return;
    }
    const sampler = this.#samplers.get(task.id);
    const models = new ModelBroker(this.#llm, {
      budget: task.budget,
      limits: this.#limits,
      defaultModel: task.model,
      sampler,
      answer: (answer) => process.send(answer),
      observe: (call) => this.#observer.modelCall(task, call),
    });
    const running: Running = { process, models };
    this.#running.set(task.id, running);
    // A launch whose task was taken from this node (queued again or run elsewhere, `#onChange`)
    // no longer speaks for it: its process's words, exit and timer change nothing.
    const ours = () => this.#running.get(task.id) === running;
    this.#observer.launched(task, spare);
    this.#store.changed(task);
    this.events.emit({ type: "task", id: task.id });
    const timer = setTimeout(() => {
      if (!ours()) return;
      this.#settle(task, "timed_out", {
        code: "timed_out",
        message: `The task ran past its timeout of ${task.timeoutS} s`,
      });
    }, task.timeoutS * 1000);
    const turn = process.start(
      {
        taskId: task.id,
        kind: task.kind,
        ...(task.prompt === undefined ? {} : { prompt: task.prompt }),
        params: task.params,
        budget: task.budget,
        ...(kind ? { modulePath: kind.modulePath } : {}),
        grynya: this.#grynya,
      },
      (event) => {
        if (ours()) this.#onEvent(task, event);
      },
    );
    const slot = turn.then(async (end) => {
      clearTimeout(timer);
      clearTimeout(running.idleWait);
      if (end.type === "idle" && ours() && !isTerminal(task.state)) {
        // A host never says idle before its task's last word: this one broke the protocol.
        process.kill();
        this.#settle(task, "failed", {
          code: "protocol_violation",
          message: "The task's process said it was idle before its task ended",
        });
      }
      // Kept for this principal only; `release` ends it unless it is fit for another task. Its
      // host prepares the kind's Worker from the snapshot, which the pool then holds.
      if (end.type === "idle" && this.#pool.release(process, task.owner, kind)) {
        hold = undefined;
        if (ours()) this.#running.delete(task.id);
        return;
      }
      // The slot is free only once the process is really gone.
      const exit = end.type === "exited" ? end.exit : await process.exited;
      if (ours()) {
        this.#settle(task, "failed", describeExit(exit));
        this.#running.delete(task.id);
      }
      this.#observer.exited(task, exit);
    });
    this.#slots.add(slot);
    this.#slotsOf.set(task.owner, (this.#slotsOf.get(task.owner) ?? 0) + 1);
    void slot.finally(() => {
      hold?.release(); // the process is gone (or kept, and the pool holds it): it reads it no more
      prepared?.release();
      this.#slots.delete(slot);
      const held = this.#slotsOf.get(task.owner)! - 1;
      if (held > 0) this.#slotsOf.set(task.owner, held);
      else this.#slotsOf.delete(task.owner);
      this.#pump();
    });
  }

  #onEvent(task: LiveTask, event: ProcessEvent): void {
    try {
      this.#apply(task, event);
    } catch (error) {
      this.#settle(task, "failed", {
        code: "protocol_violation",
        message: `The task's event could not be applied: ${String(error).slice(0, 500)}`,
      });
    }
  }

  #apply(task: LiveTask, event: ProcessEvent): void {
    const now = this.#now();
    // Lines written while a cancelled task winds down are kept; nothing else counts after the end.
    if (event.type === "raw") {
      this.#observer.logged(task, 1, utf8Length(event.text), 0);
      this.#store.logged(task, [task.logs.append(event.stream, event.text, now)]);
      return this.events.emit({ type: "log", id: task.id, seq: task.logs.lastSeq });
    }
    if (event.type === "logs") {
      // The host dropped the oldest lines waiting there: they came before this batch.
      if (event.dropped > 0) task.logs.countDropped(event.dropped);
      const lines: JournalLine[] = [];
      let bytes = 0;
      for (const [stream, text] of event.lines) {
        bytes += utf8Length(text);
        lines.push(task.logs.append(stream, text, now));
      }
      this.#observer.logged(task, lines.length, bytes, event.dropped);
      this.#store.logged(task, lines);
      this.events.emit({ type: "log", id: task.id, seq: task.logs.lastSeq });
      return;
    }
    if (event.type === "grynya") return this.#observer.grynya(task, event.activity);
    if (isTerminal(task.state)) return;
    const running = this.#running.get(task.id);
    switch (event.type) {
      case "running":
        task.codeStartedAt = now;
        this.#observer.codeStarted(task);
        this.#store.progressed(task);
        this.events.emit({ type: "task", id: task.id });
        return;
      case "progress":
        task.progress = {
          done: event.done,
          ...(event.total === undefined ? {} : { total: event.total }),
          ...(event.message === undefined ? {} : { message: event.message }),
        };
        this.#store.progressed(task);
        this.events.emit({ type: "task", id: task.id });
        return;
      case "result":
        return this.#settle(task, "succeeded", event.json, true);
      case "failure":
        return this.#settle(task, "failed", event.error, true);
      case "llm_request":
        return void running?.models.request(event.id, event.request);
      case "llm_cancel":
        return running?.models.cancel(event.id);
      case "saved": {
        const save = { ...event.save, time: new Date(now).toISOString() };
        task.saves.push(save);
        if (task.saves.length > MAX_SAVES_KEPT) task.saves.shift();
        this.#store.saved({
          taskId: task.id,
          seq: save.seq,
          tool: save.tools.join(","),
          ok: save.ok,
          time: now,
          reply: save.reply,
        });
        this.events.emit({ type: "task", id: task.id });
        return;
      }
      default: {
        const _exhaustive: never = event;
        return _exhaustive;
      }
    }
  }

  /**
   * The one place a task ends. A second ending of the same task is ignored. `reported`: its host
   * reported the end, so the host ends the task's turn itself (idle, or its process exits) and is
   * not told to stop; it is killed if it does neither within KLYM_CANCEL_GRACE_MS.
   */
  #settle(task: TaskRecord, status: "succeeded", resultJson: string, reported?: boolean): void;
  #settle(
    task: TaskRecord,
    status: "failed" | "cancelled" | "timed_out",
    error: Failure,
    reported?: boolean,
  ): void;
  #settle(task: TaskRecord, status: TaskStatus, outcome: string | Failure, reported = false): void {
    if (isTerminal(task.state)) return;
    const from = task.state.status;
    const finishedAt = this.#now();
    const startedAt = task.state.status === "running" ? task.state.startedAt : undefined;
    task.state = transition(
      task.state,
      status === "succeeded"
        ? { status, startedAt, finishedAt, resultJson: outcome as string }
        : { status: status as "failed", startedAt, finishedAt, error: outcome as Failure },
    );
    this.#samplers.delete(task.id);
    this.#queue.remove(task.owner, task as LiveTask);
    const running = this.#running.get(task.id);
    if (running) {
      running.models.close();
      if (reported) {
        const process = running.process;
        running.idleWait = setTimeout(() => process.kill(), this.#limits.cancelGraceMs);
      } else {
        const reason = status === "succeeded" || status === "failed" ? "finished" : status;
        void running.process.stop(reason, this.#limits.cancelGraceMs);
      }
    }
    this.#observer.settled(task, from);
    logger.info("Task {taskId} ({kind}) {status}", { taskId: task.id, kind: task.kind, status });
    this.#store.changed(task);
    this.events.emit({ type: "task", id: task.id });
    this.#updateIdle();
  }
}

/** How a process that ended before its task reported an outcome ended, from the OS's word. */
export function describeExit(exit: ProcessExit): Failure {
  if (/out of memory|heap limit|allocation failed|memory allocation of/i.test(exit.stderrTail)) {
    return {
      code: "out_of_memory",
      message: "The task ran out of memory (KLYM_TASK_MEMORY_MB) and its process was ended",
    };
  }
  const how = exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
  const tail = exit.stderrTail.trim().split("\n").slice(-3).join(" | ");
  return {
    code: "process_exited",
    message: `The task's process ended (${how}) before the task reported a result${
      tail ? `: ${tail.slice(0, 1000)}` : ""
    }`,
  };
}

/** A queued task's input bytes, as the fair queue counts them. */
function inputBytes(task: TaskRecord): number {
  return utf8Length(JSON.stringify(task.params)) +
    (task.prompt === undefined ? 0 : utf8Length(task.prompt));
}

/** `t_` and 128 random bits: ids cannot be guessed. */
function newTaskId(now: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  const random = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `t_${now.toString(36)}${random}`;
}
