/**
 * The MCP task core both protocol eras share (`era_2025.ts`, `era_2026.ts`): what MCP keeps about a
 * task beyond the registry's record (the ttl granted, the result its start names, the requests
 * waiting on it, its input requests), one view of its MCP status, and the steps both eras take to
 * start, find and wait for a task. A task is one task whichever way it was started or is read.
 *
 * One core lives as long as the registry (created next to it in `klym.ts`) and serves every
 * session. A task's links are held in a `WeakMap` keyed by its record: when the registry forgets
 * the task (KLYM_RETENTION_S, KLYM_MAX_FINISHED, KLYM_RETAINED_BYTES) they go with it.
 *
 * Status mapping: queued/running → `working` (`input_required` while the task waits on its
 * client), succeeded → `completed`, failed/timed_out/interrupted → `failed`, cancelled →
 * `cancelled`. Only the principal that started a task finds it here (as in the tools).
 */
import { type CallToolResult, ProtocolError, type RequestId } from "@modelcontextprotocol/server";
import { z } from "zod";
import type { TaskRecord, TaskRegistry } from "../tasks/task_registry.ts";
import { isTerminal } from "../tasks/task_state.ts";
import { KlymError } from "../errors.ts";
import { finalResult } from "./task_tools.ts";
import { InputRequests } from "./input_requests.ts";

const POLL_INTERVAL_MS = 1000;
export const INVALID_PARAMS = -32602;

/** The protocol era a client speaks: 2025-11-25 (and earlier) or 2026-07-28. */
export type Era = "legacy" | "modern";

export type McpTaskStatus = "working" | "input_required" | "completed" | "failed" | "cancelled";

/** A task as MCP's `Task` object (protocol 2025-11-25; the 2026-07-28 era renames two fields). */
export interface McpTask {
  readonly taskId: string;
  readonly status: McpTaskStatus;
  readonly statusMessage?: string;
  readonly createdAt: string;
  readonly lastUpdatedAt: string;
  /** The time (ms) the task is kept after it ends, as granted at creation. */
  readonly ttl: number;
  readonly pollInterval: number;
}

/** Turns a task's final record into the result of the call that started it. */
export type ResultOf = (task: TaskRecord) => CallToolResult;

/** A task started for a tool call, with the result its call gives when not `finalResult`'s. */
export interface StartedTask {
  readonly task: TaskRecord;
  readonly resultOf?: ResultOf;
}

/**
 * Starts the task behind a task-augmented call of `tool`; `undefined` for a tool that has none.
 * `capabilities` are a 2026-07-28 request's client capabilities (its task then asks in-band).
 */
export type StartFor = (
  tool: string,
  args: Record<string, unknown>,
  capabilities?: Record<string, unknown>,
) => Promise<StartedTask> | undefined;

/** The params of `tasks/get`, `tasks/result`, `tasks/cancel` and `tasks/update`. */
export const TaskIdParams = z.object({ taskId: z.string().min(1).max(200) }).passthrough();
/** Any result object (the SDK checks none of these results). */
export const AnyResult = z.record(z.string(), z.unknown());

/** What the core keeps about a task beyond the registry's record. */
interface TaskLinks {
  /** The `ttl` granted at creation (ms), bounded by KLYM_RETENTION_S. */
  ttl: number;
  readonly inputs: InputRequests;
  /** Requests waiting on the task (a plain `run_task` call, `tasks/result`), per session. */
  readonly waiting: Map<object, RequestId[]>;
  /** Told each time a request starts waiting on the task (see `whenWaiting`). */
  readonly onWaiting: Set<() => void>;
  resultOf: ResultOf;
  /** The log sequence number `tasks/get` has delivered as live messages (2026-07-28). */
  polledLogs: number;
  /** Starts the task's poll lease over, while it has one (`lease`). */
  touch?: (() => void) | undefined;
}

/** What the core needs of the registry: its tasks by id and owner, and their changes. */
export type TaskSource = Pick<TaskRegistry, "get" | "events">;

export interface McpTaskCoreOptions {
  /** KLYM_RETENTION_S in ms: the longest ttl granted, and the ttl of a task granted none. */
  readonly retentionMs: number;
  /** KLYM_TASK_POLL_LEASE_S in ms (0: none): see `lease`. */
  readonly pollLeaseMs?: number;
  /** Cancels a task whose lease ran out (the registry's cancel, as its owner). */
  readonly cancel?: (task: TaskRecord, reason: string) => void;
}

export class McpTaskCore {
  readonly #registry: TaskSource;
  readonly #retentionMs: number;
  readonly #pollLeaseMs: number;
  readonly #cancel: ((task: TaskRecord, reason: string) => void) | undefined;
  readonly #links = new WeakMap<TaskRecord, TaskLinks>();

  constructor(registry: TaskSource, options: McpTaskCoreOptions) {
    this.#registry = registry;
    this.#retentionMs = options.retentionMs;
    this.#pollLeaseMs = options.pollLeaseMs ?? 0;
    this.#cancel = options.cancel;
  }

  /**
   * Holds `task` (created through the Tasks extension, whose client holds no call open) to its
   * client's polls: when no `tasks/*` request names it (`touch`) for KLYM_TASK_POLL_LEASE_S, the
   * client is gone (it crashed, or its follow-ups keep failing) and the task is cancelled rather
   * than left to burn a core until its deadline. Ends when the task is final.
   */
  lease(task: TaskRecord): void {
    if (this.#pollLeaseMs <= 0 || !this.#cancel || isTerminal(task.state)) return;
    const links = this.#linksOf(task);
    const seconds = this.#pollLeaseMs / 1000;
    const expire = () => {
      stop();
      if (isTerminal(task.state)) return;
      this.#cancel?.(
        task,
        `no tasks/get, tasks/update or tasks/cancel named it for ${seconds} s (KLYM_TASK_POLL_LEASE_S): its client is gone`,
      );
    };
    let timer = setTimeout(expire, this.#pollLeaseMs);
    Deno.unrefTimer(timer);
    const unsubscribe = this.#registry.events.subscribe((change) => {
      if (change.type === "task" && change.id === task.id && isTerminal(task.state)) stop();
    });
    const stop = () => {
      clearTimeout(timer);
      unsubscribe();
      links.touch = undefined;
    };
    links.touch = () => {
      clearTimeout(timer);
      timer = setTimeout(expire, this.#pollLeaseMs);
      Deno.unrefTimer(timer);
    };
  }

  /** A `tasks/*` request named `task`: its lease starts over. */
  touch(task: TaskRecord): void {
    this.#links.get(task)?.touch?.();
  }

  #linksOf(task: TaskRecord): TaskLinks {
    let found = this.#links.get(task);
    if (!found) {
      found = {
        ttl: this.#retentionMs,
        inputs: new InputRequests(),
        waiting: new Map(),
        onWaiting: new Set(),
        resultOf: finalResult,
        polledLogs: 0,
      };
      this.#links.set(task, found);
    }
    return found;
  }

  /** `owner`'s task `id`, or the invalid-params error both eras answer for any other id. */
  find(id: string, owner: string): TaskRecord {
    try {
      return this.#registry.get(id, owner);
    } catch (error) {
      if (error instanceof KlymError) {
        throw new ProtocolError(
          INVALID_PARAMS,
          `Failed to retrieve task: no task "${id}" (never existed, not yours, or forgotten after KLYM_RETENTION_S)`,
        );
      }
      throw error;
    }
  }

  /** The task's MCP status as a client of `era` sees it (each era sees only its own input). */
  status(task: TaskRecord, era: Era = "legacy"): McpTaskStatus {
    switch (task.state.status) {
      case "queued":
      case "running":
        return this.#links.get(task)?.inputs.awaitedBy(era) ? "input_required" : "working";
      case "succeeded":
        return "completed";
      case "failed":
      case "timed_out":
      case "interrupted":
        return "failed";
      case "cancelled":
        return "cancelled";
      default: {
        const _exhaustive: never = task.state;
        return _exhaustive;
      }
    }
  }

  /** The task as MCP's `Task` object, as a client of `era` sees it. */
  view(task: TaskRecord, era: Era = "legacy"): McpTask {
    const state = task.state;
    const times = [
      task.createdAt,
      "startedAt" in state ? state.startedAt ?? 0 : 0,
      task.codeStartedAt ?? 0,
      "finishedAt" in state ? state.finishedAt : 0,
    ];
    const status = this.status(task, era);
    const message = "error" in state
      ? `${state.error.code}: ${state.error.message}`
      : status === "input_required"
      ? "waiting for the client's model (sampling/createMessage)"
      : task.progress?.message;
    return {
      taskId: task.id,
      status,
      ...(message ? { statusMessage: message.slice(0, 1000) } : {}),
      createdAt: new Date(task.createdAt).toISOString(),
      lastUpdatedAt: new Date(Math.max(...times)).toISOString(),
      ttl: this.#links.get(task)?.ttl ?? this.#retentionMs,
      pollInterval: POLL_INTERVAL_MS,
    };
  }

  /** Grants `task` the ttl a task-augmented call asked for (ms), bounded by KLYM_RETENTION_S. */
  grantTtl(task: TaskRecord, requested: unknown): void {
    this.#linksOf(task).ttl = typeof requested === "number" && requested > 0
      ? Math.min(Math.floor(requested), this.#retentionMs)
      : this.#retentionMs;
  }

  /** The result of the call that started `task` (`run_task`'s unless its start named another). */
  resultOf(task: TaskRecord): CallToolResult {
    return (this.#links.get(task)?.resultOf ?? finalResult)(task);
  }

  /**
   * The log sequence number polls of `task` have delivered so far; `to` moves it on. Shared by
   * every poller of the task: each line goes once to whichever poll asks for logs first.
   */
  polledLogs(task: TaskRecord, to?: number): number {
    const links = this.#linksOf(task);
    if (to !== undefined) links.polledLogs = Math.max(links.polledLogs, to);
    return links.polledLogs;
  }

  /** What `task` waits on from its client. */
  inputs(task: TaskRecord): InputRequests {
    return this.#linksOf(task).inputs;
  }

  /**
   * Awaits a task start for a tool call: the task (with the result its call gives recorded), or a
   * refused start as the tool's own error, as a plain call would report it.
   */
  async start(starting: Promise<StartedTask>): Promise<
    { task: TaskRecord } | {
      refused: CallToolResult;
    }
  > {
    try {
      const { task, resultOf } = await starting;
      if (resultOf) this.#linksOf(task).resultOf = resultOf;
      return { task };
    } catch (error) {
      if (error instanceof KlymError) {
        return {
          refused: {
            isError: true,
            content: [{ type: "text", text: `${error.code}: ${error.message}` }],
          },
        };
      }
      throw error;
    }
  }

  /**
   * Marks request `id` of `session` as waiting on `task` until the returned function runs: the
   * task's sampling requests travel on that request's stream meanwhile.
   */
  markWaiting(task: TaskRecord, session: object, id: RequestId): () => void {
    const links = this.#linksOf(task);
    const waiting = links.waiting;
    const ids = waiting.get(session) ?? [];
    ids.push(id);
    waiting.set(session, ids);
    for (const told of [...links.onWaiting]) told();
    return () => {
      const at = ids.indexOf(id);
      if (at !== -1) ids.splice(at, 1);
      if (ids.length === 0) waiting.delete(session);
    };
  }

  /** The request of `session` that a sampling request for `task` should travel with. */
  waitingRequest(task: TaskRecord | undefined, session: object): RequestId | undefined {
    if (!task) return undefined;
    return this.#links.get(task)?.waiting.get(session)?.at(-1);
  }

  /**
   * The request of `session` waiting on `task`, once there is one, or a rejection when `signal`
   * aborts first. A task-augmented call of 2025-11-25 is answered at once: its task's sampling
   * requests have no stream of their own until the client, seeing `input_required`, sends
   * `tasks/result` to receive them.
   */
  whenWaiting(task: TaskRecord, session: object, signal: AbortSignal): Promise<RequestId> {
    const told = this.#linksOf(task).onWaiting;
    return settledWhen(() => this.waitingRequest(task, session), signal, (check) => {
      told.add(check);
      return () => told.delete(check);
    });
  }

  /** Resolves when `task` is final, or rejects when `signal` aborts first. */
  async whenFinal(task: TaskRecord, signal: AbortSignal): Promise<void> {
    await this.#until(task, signal, false);
  }

  /**
   * Resolves when `task` is final (`"final"`) or has a request parked for its 2026-07-28 client
   * (`"asking"`), or rejects when `signal` aborts first.
   */
  whenFinalOrAsking(task: TaskRecord, signal: AbortSignal): Promise<"final" | "asking"> {
    return this.#until(task, signal, true);
  }

  #until(task: TaskRecord, signal: AbortSignal, asking: boolean): Promise<"final" | "asking"> {
    const inputs = this.inputs(task);
    const settled = (): "final" | "asking" | undefined =>
      isTerminal(task.state)
        ? "final"
        : asking && inputs.awaitedBy("modern")
        ? "asking"
        : undefined;
    return settledWhen(settled, signal, (check) => {
      const unsubscribe = this.#registry.events.subscribe((change) => {
        if (change.type === "task" && change.id === task.id) check();
      });
      const unpark = asking ? inputs.onParked(check) : () => {};
      return () => (unsubscribe(), unpark());
    });
  }
}

/**
 * Resolves with what `settled` says once it says something: asked now, then each time `watch`
 * calls back (`watch` returns how to stop watching). Rejects when `signal` aborts first.
 */
function settledWhen<T>(
  settled: () => T | undefined,
  signal: AbortSignal,
  watch: (check: () => void) => () => void,
): Promise<T> {
  const now = settled();
  if (now !== undefined) return Promise.resolve(now);
  const { promise, resolve, reject } = Promise.withResolvers<T>();
  const check = () => {
    const outcome = settled();
    if (outcome !== undefined) (stop(), resolve(outcome));
  };
  const onAbort = () => (stop(), reject(signal.reason ?? new Error("aborted")));
  const unwatch = watch(check);
  const stop = () => {
    unwatch();
    signal.removeEventListener("abort", onAbort);
  };
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort();
  return promise;
}
