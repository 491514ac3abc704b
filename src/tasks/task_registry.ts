/**
 * The main isolate's book of tasks: admission and limits, the FIFO queue, the running slots,
 * deadlines and cancel, and retention of finished tasks. Every status change goes through
 * `#settle`/`#begin`, which call `transition`, so each task reaches exactly one terminal state.
 */
import { getLogger } from "@logtape/logtape";
import { TaskError, type TaskFailure } from "../errors.ts";
import {
  byteLimitProblem,
  type GrynyaSettings,
  type LlmRequest,
  type TaskEvent,
  utf8Length,
} from "../protocol.ts";
import { LlmError, type LlmService, NO_MODEL_MESSAGE } from "../llm/llm_service.ts";
import type { Sampler } from "../llm/sampling.ts";
import { linkedAbort } from "../abort.ts";
import type { Config } from "../config.ts";
import { LogBuffer } from "./log_buffer.ts";
import { isTerminal, type TaskState, type TaskStatus, transition } from "./task_state.ts";
import type { ProcessPool } from "./process_pool.ts";
import type { ProcessExit, TaskProcess } from "./task_process.ts";
import type { KindCatalog } from "./kind_catalog.ts";
import { TaskEvents } from "./task_events.ts";

const logger = getLogger(["klym", "tasks"]);

export interface StartRequest {
  kind: string;
  /** A configured model for this task's `ctx.llm` calls (default: KLYM_MODEL). */
  model?: string | undefined;
  /** The starting client's own model, for `ctx.llm` when no model is configured. */
  sampler?: Sampler | undefined;
  prompt?: string | undefined;
  params?: Record<string, unknown> | undefined;
  timeoutS?: number | undefined;
}

export interface Progress {
  readonly done: number;
  readonly total?: number;
  readonly message?: string;
}

export interface TaskRecord {
  readonly id: string;
  readonly kind: string;
  /** A custom kind's module, resolved at admission; built-in kinds have none. */
  readonly modulePath: string | undefined;
  readonly model: string | undefined;
  readonly prompt: string | undefined;
  readonly params: Record<string, unknown>;
  readonly timeoutS: number;
  readonly createdAt: number;
  readonly logs: LogBuffer;
  state: TaskState;
  progress: Progress | undefined;
  /** When the task's own code began to run (after process start and module load). */
  codeStartedAt: number | undefined;
}

type RegistryLimits = Pick<
  Config,
  | "maxConcurrent"
  | "maxQueued"
  | "defaultTimeoutS"
  | "maxTimeoutS"
  | "cancelGraceMs"
  | "logLimitBytes"
  | "maxLogLineBytes"
  | "maxPromptBytes"
  | "maxParamsBytes"
  | "maxResultBytes"
  | "retentionS"
  | "maxFinished"
  | "agentMaxSteps"
  | "agentMaxTokens"
>;

/** A running task's process and what its model calls depend on. */
interface Running {
  readonly process: TaskProcess;
  readonly sampler: Sampler | undefined;
  /** Aborts every model call of the task when it ends. */
  readonly llmAbort: AbortController;
  readonly llmCalls: Map<number, AbortController>;
}

export class TaskRegistry {
  readonly #tasks = new Map<string, TaskRecord>();
  readonly #queue: TaskRecord[] = [];
  readonly #running = new Map<string, Running>();
  /** Processes not yet exited, whether or not their task is still running. */
  readonly #slots = new Set<Promise<ProcessExit>>();
  readonly #finished: string[] = [];
  /** The starting client's sampler of each unfinished task. */
  readonly #samplers = new Map<string, Sampler>();
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #closing = false;
  #counter = 0;
  #idle: PromiseWithResolvers<void> | undefined;
  /** Admissions, status and progress changes, and new log lines, for live views. */
  readonly events = new TaskEvents();

  constructor(
    readonly limits: RegistryLimits,
    readonly grynya: GrynyaSettings,
    readonly llm: LlmService,
    readonly kinds: KindCatalog,
    readonly pool: ProcessPool,
    readonly now: () => number = Date.now,
  ) {
    this.#sweeper = setInterval(() => this.#sweep(), 1000);
  }

  /** Admits a task and returns at once; it runs when a slot is free. */
  start(request: StartRequest): TaskRecord {
    if (this.#closing) {
      throw new TaskError("SHUTTING_DOWN", "Cannot start task: Klym is shutting down");
    }
    const { modulePath, timeoutS, params } = this.#admit(request);
    const now = this.now();
    const task: TaskRecord = {
      id: `t_${now.toString(36)}${(this.#counter++).toString(36)}${randomSuffix()}`,
      kind: request.kind,
      modulePath,
      model: request.model,
      prompt: request.prompt,
      params,
      timeoutS,
      createdAt: now,
      logs: new LogBuffer(this.limits.logLimitBytes),
      state: { status: "queued", queuedAt: now },
      progress: undefined,
      codeStartedAt: undefined,
    };
    this.#tasks.set(task.id, task);
    if (request.sampler) this.#samplers.set(task.id, request.sampler);
    this.#queue.push(task);
    this.events.emit({ type: "task", id: task.id });
    this.#pump();
    return task;
  }

  /** Checks a start request against the kinds, models and limits; throws a `TaskError` naming the fix. */
  #admit(request: StartRequest) {
    const modulePath = this.kinds.resolve(request.kind);
    if (request.model !== undefined) {
      try {
        this.llm.catalog.get(request.model);
      } catch (error) {
        throw new TaskError(
          "INVALID_INPUT",
          `Cannot start task: "model": ${(error as Error).message}`,
        );
      }
    }
    if (request.kind === "agent" && !this.llm.available(request.sampler)) {
      throw new TaskError("NO_MODEL", `Cannot start an agent task: ${NO_MODEL_MESSAGE}`);
    }
    const timeoutS = request.timeoutS ?? this.limits.defaultTimeoutS;
    if (!Number.isInteger(timeoutS) || timeoutS < 1 || timeoutS > this.limits.maxTimeoutS) {
      throw new TaskError(
        "INVALID_INPUT",
        `Cannot start task: "timeout_s" must be a whole number between 1 and ${this.limits.maxTimeoutS} (KLYM_MAX_TIMEOUT_S), received ${timeoutS}`,
      );
    }
    const promptProblem = request.prompt === undefined ? undefined : byteLimitProblem(
      "prompt",
      request.prompt,
      this.limits.maxPromptBytes,
      "KLYM_MAX_PROMPT_BYTES",
    );
    if (promptProblem) {
      throw new TaskError(
        "INVALID_INPUT",
        `Cannot start task: ${promptProblem}; shorten it or pass large data by reference`,
      );
    }
    const params = request.params ?? {};
    const paramsBytes = utf8Length(JSON.stringify(params));
    if (paramsBytes > this.limits.maxParamsBytes) {
      throw new TaskError(
        "INVALID_INPUT",
        `Cannot start task: "params" is ${paramsBytes} bytes as JSON, the limit is ${this.limits.maxParamsBytes} (KLYM_MAX_PARAMS_BYTES)`,
      );
    }
    if (this.#queue.length >= this.limits.maxQueued && this.#freeSlots() === 0) {
      throw new TaskError(
        "QUEUE_FULL",
        `Cannot start task: ${this.#running.size} tasks are running and ${this.#queue.length} are queued, the queue limit is ${this.limits.maxQueued} (KLYM_MAX_QUEUED); wait for tasks to finish or cancel some`,
      );
    }
    return { modulePath, timeoutS, params };
  }

  get(id: string): TaskRecord {
    const task = this.#tasks.get(id);
    if (!task) {
      throw new TaskError(
        "TASK_NOT_FOUND",
        `No task "${id}"; it never existed or was forgotten after KLYM_RETENTION_S (${this.limits.retentionS} s). list_tasks shows the known ids`,
      );
    }
    return task;
  }

  /** Newest first. */
  list(status?: TaskStatus, limit = 50): TaskRecord[] {
    const out: TaskRecord[] = [];
    const all = [...this.#tasks.values()];
    for (let i = all.length - 1; i >= 0 && out.length < limit; i--) {
      const task = all[i]!;
      if (!status || task.state.status === status) out.push(task);
    }
    return out;
  }

  counts(): Record<TaskStatus, number> {
    const counts = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, timed_out: 0 };
    for (const task of this.#tasks.values()) counts[task.state.status]++;
    return counts;
  }

  /** The process id of a running task, for resource figures; `undefined` when it has none. */
  pidOf(id: string): number | undefined {
    return this.#running.get(id)?.process.pid;
  }

  /** Ends a task as `cancelled`; a finished task keeps its status (idempotent). */
  cancel(id: string, reason = "cancelled by the client"): TaskRecord {
    const task = this.get(id);
    this.#settle(task, "cancelled", { code: "cancelled", message: reason });
    return task;
  }

  /** Resolves when no task process is left (queue empty, every process exited). */
  whenIdle(): Promise<void> {
    if (this.#queue.length === 0 && this.#slots.size === 0) return Promise.resolve();
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  /** Cancels everything with reason "shutdown" and waits for every task process to be gone. */
  async shutdown(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#sweeper);
    for (const task of [...this.#queue, ...this.#tasks.values()]) {
      this.#settle(task, "cancelled", { code: "shutdown", message: "Klym is shutting down" });
    }
    await Promise.allSettled([...this.#slots]);
    await this.pool.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  #freeSlots(): number {
    return Math.max(0, this.limits.maxConcurrent - this.#slots.size);
  }

  #pump(): void {
    while (!this.#closing && this.#queue.length > 0 && this.#freeSlots() > 0) {
      this.#launch(this.#queue.shift()!);
    }
    this.#updateIdle();
  }

  #updateIdle(): void {
    if (this.#idle && this.#queue.length === 0 && this.#slots.size === 0) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
  }

  #launch(task: TaskRecord): void {
    const now = this.now();
    if (task.state.status !== "queued") return;
    task.state = transition(task.state, {
      status: "running",
      queuedAt: task.state.queuedAt,
      startedAt: now,
    });
    const process = this.pool.acquire();
    this.#running.set(task.id, {
      process,
      sampler: this.#samplers.get(task.id),
      llmAbort: new AbortController(),
      llmCalls: new Map(),
    });
    this.events.emit({ type: "task", id: task.id });
    const timer = setTimeout(() => {
      this.#settle(task, "timed_out", {
        code: "timed_out",
        message: `The task ran past its timeout of ${task.timeoutS} s`,
      });
    }, task.timeoutS * 1000);
    const slot = process.exited.then((exit) => {
      clearTimeout(timer);
      this.#settle(task, "failed", describeExit(exit));
      this.#running.delete(task.id);
      return exit;
    });
    this.#slots.add(slot);
    void slot.finally(() => {
      this.#slots.delete(slot);
      this.#pump();
    });
    process.start(
      {
        taskId: task.id,
        kind: task.kind,
        ...(task.prompt === undefined ? {} : { prompt: task.prompt }),
        params: task.params,
        ...(task.modulePath ? { modulePath: task.modulePath } : {}),
        grynya: this.grynya,
        agent: { maxSteps: this.limits.agentMaxSteps, maxTokens: this.limits.agentMaxTokens },
        maxLogLineBytes: this.limits.maxLogLineBytes,
        maxResultBytes: this.limits.maxResultBytes,
      },
      (event) => this.#onEvent(task, event),
    );
  }

  #onEvent(task: TaskRecord, event: TaskEvent): void {
    // Lines written while a cancelled task winds down are kept; nothing else counts after the end.
    if (event.type === "log") {
      task.logs.append(event.stream, event.text, event.time);
      this.events.emit({ type: "log", id: task.id, seq: task.logs.lastSeq });
      return;
    }
    if (isTerminal(task.state)) return;
    switch (event.type) {
      case "ready":
        return;
      case "running":
        task.codeStartedAt = event.time;
        this.events.emit({ type: "task", id: task.id });
        return;
      case "progress":
        task.progress = {
          done: event.done,
          ...(event.total === undefined ? {} : { total: event.total }),
          ...(event.message === undefined ? {} : { message: event.message }),
        };
        this.events.emit({ type: "task", id: task.id });
        return;
      case "result":
        this.#settle(task, "succeeded", event.value);
        return;
      case "failure":
        this.#settle(task, "failed", event.error);
        return;
      case "llm_request":
        void this.#answerModel(task, event.id, event.request);
        return;
      case "llm_cancel":
        this.#running.get(task.id)?.llmCalls.get(event.id)?.abort();
        return;
      default: {
        const _exhaustive: never = event;
        return _exhaustive;
      }
    }
  }

  /** The one place a task ends. A second ending of the same task is ignored. */
  #settle(task: TaskRecord, status: "succeeded", result: unknown): void;
  #settle(task: TaskRecord, status: "failed" | "cancelled" | "timed_out", error: TaskFailure): void;
  #settle(task: TaskRecord, status: TaskStatus, outcome: unknown): void {
    if (isTerminal(task.state)) return;
    const finishedAt = this.now();
    const startedAt = task.state.status === "running" ? task.state.startedAt : undefined;
    task.state = transition(
      task.state,
      status === "succeeded"
        ? { status, startedAt, finishedAt, result: outcome }
        : { status: status as "failed", startedAt, finishedAt, error: outcome as TaskFailure },
    );
    this.#samplers.delete(task.id);
    const queued = this.#queue.indexOf(task);
    if (queued !== -1) this.#queue.splice(queued, 1);
    const running = this.#running.get(task.id);
    if (running) {
      const reason = status === "succeeded" || status === "failed" ? "finished" : status;
      running.llmAbort.abort();
      void running.process.stop(reason, this.limits.cancelGraceMs);
    }
    this.#finished.push(task.id);
    logger.info("Task {taskId} ({kind}) {status}", { taskId: task.id, kind: task.kind, status });
    this.events.emit({ type: "task", id: task.id });
    this.#trimFinished();
    this.#updateIdle();
  }

  /** Relays one model call of a task; cancel from either side aborts the provider's request. */
  async #answerModel(task: TaskRecord, id: number, request: LlmRequest): Promise<void> {
    const running = this.#running.get(task.id);
    if (!running) return;
    const call = new AbortController();
    running.llmCalls.set(id, call);
    using abort = linkedAbort([running.llmAbort.signal, call.signal]);
    const signal = abort.signal;
    try {
      const response = await this.llm.generate(
        {
          ...request,
          ...(request.model ?? task.model ? { model: request.model ?? task.model } : {}),
        },
        signal,
        running.sampler,
      );
      running.process.send({ type: "llm_response", id, response });
    } catch (error) {
      if (signal.aborted) return;
      const failure = error instanceof LlmError
        ? { code: error.code, message: error.message }
        : { code: "model_error", message: error instanceof Error ? error.message : String(error) };
      running.process.send({ type: "llm_error", id, error: failure });
    } finally {
      running.llmCalls.delete(id);
    }
  }

  #trimFinished(): void {
    while (this.#finished.length > this.limits.maxFinished) {
      this.#tasks.delete(this.#finished.shift()!);
    }
  }

  #sweep(): void {
    const cutoff = this.now() - this.limits.retentionS * 1000;
    while (this.#finished.length > 0) {
      const task = this.#tasks.get(this.#finished[0]!);
      if (task && "finishedAt" in task.state && task.state.finishedAt > cutoff) break;
      this.#finished.shift();
      if (task) this.#tasks.delete(task.id);
    }
  }
}

function describeExit(exit: ProcessExit): TaskFailure {
  if (/heap out of memory|Reached heap limit/i.test(exit.stderrTail)) {
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
      tail ? `: ${tail}` : ""
    }`,
  };
}

function randomSuffix(): string {
  return crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
}
