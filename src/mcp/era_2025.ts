/**
 * MCP's own tasks (protocol 2025-11-25): task-augmented `tools/call`, `tasks/get`, `tasks/result`,
 * `tasks/list`, `tasks/cancel` and `notifications/tasks/status`, over the same registry as the four
 * tools, so a task is one task whichever way it was started or is read. The SDK (v2.4) parses the
 * task vocabulary but has no runtime for it; this file is that runtime, and nothing more.
 *
 * Status mapping: queued/running → `working` (`input_required` while the task waits on the
 * client's own model), succeeded → `completed`, failed/timed_out → `failed`, cancelled →
 * `cancelled`. Only the principal that started a task sees it here (as in the tools).
 */
import {
  type CallToolResult,
  type McpServer,
  ProtocolError,
  RELATED_TASK_META_KEY,
  type RequestId,
} from "@modelcontextprotocol/server";
import { z } from "zod";
import type { TaskRecord, TaskRegistry } from "../tasks/task_registry.ts";
import { isTerminal } from "../tasks/task_state.ts";
import { TaskError } from "../errors.ts";

export const POLL_INTERVAL_MS = 1000;
export const LIST_PAGE_SIZE = 50;
const INVALID_PARAMS = -32602;
const METHOD_NOT_FOUND = -32601;

export type McpTaskStatus = "working" | "input_required" | "completed" | "failed" | "cancelled";

/** What the native face keeps about a task beyond the registry's record; gone with the record. */
export interface TaskLinks {
  /** The `ttl` granted at creation (ms), bounded by KLYM_RETENTION_S. */
  ttl: number;
  /** Sampling requests to the starting client not yet answered: the task is `input_required`. */
  pendingInput: number;
  /**
   * Requests the task waits on that the client answers with `tasks/update` (protocol 2026-07-28,
   * which has no server-to-client requests), by key; each key is used once in a task's life.
   */
  readonly parked: Map<string, ParkedInput>;
  /** Requests parked so far, for keys that are never reused. */
  parkedCount: number;
  /** Requests waiting on the task (a plain `run_task` call, `tasks/result`), per session. */
  readonly waiting: Map<McpServer, RequestId[]>;
  /** Turns the task's final record into the underlying request's result. */
  resultOf: (task: TaskRecord) => CallToolResult;
}

/** A request to the client waiting for its answer through `tasks/update`. */
export interface ParkedInput {
  readonly request: { method: string; params: Record<string, unknown> };
  readonly answer: (response: unknown) => void;
}

const links = new WeakMap<TaskRecord, TaskLinks>();

export function linksOf(task: TaskRecord, retentionMs: number): TaskLinks {
  let found = links.get(task);
  if (!found) {
    found = {
      ttl: retentionMs,
      pendingInput: 0,
      parked: new Map(),
      parkedCount: 0,
      waiting: new Map(),
      resultOf: defaultResult,
    };
    links.set(task, found);
  }
  return found;
}

/** The request of `server`'s session that a sampling request for `task` should travel with. */
export function waitingRequest(task: TaskRecord | undefined, server: McpServer) {
  if (!task) return undefined;
  return links.get(task)?.waiting.get(server)?.at(-1);
}

/** Marks `id` (of `server`'s session) as waiting on `task` until the returned function runs. */
export function markWaiting(
  task: TaskRecord,
  retentionMs: number,
  server: McpServer,
  id: RequestId,
): () => void {
  const waiting = linksOf(task, retentionMs).waiting;
  const ids = waiting.get(server) ?? [];
  ids.push(id);
  waiting.set(server, ids);
  return () => {
    const at = ids.indexOf(id);
    if (at !== -1) ids.splice(at, 1);
    if (ids.length === 0) waiting.delete(server);
  };
}

let defaultResult: (task: TaskRecord) => CallToolResult = () => ({ content: [] });

/** The result a task's `tasks/result` gives when its start named no other (`run_task`'s). */
export function setDefaultResult(result: (task: TaskRecord) => CallToolResult): void {
  defaultResult = result;
}

export function mcpStatus(task: TaskRecord): McpTaskStatus {
  switch (task.state.status) {
    case "queued":
    case "running":
      return (links.get(task)?.pendingInput ?? 0) > 0 || (links.get(task)?.parked.size ?? 0) > 0
        ? "input_required"
        : "working";
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

/** A task as MCP's `Task` object. */
export function mcpTask(task: TaskRecord, retentionMs: number): Record<string, unknown> {
  const state = task.state;
  const times = [
    task.createdAt,
    "startedAt" in state ? state.startedAt ?? 0 : 0,
    task.codeStartedAt ?? 0,
    "finishedAt" in state ? state.finishedAt : 0,
  ];
  const status = mcpStatus(task);
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
    ttl: links.get(task)?.ttl ?? retentionMs,
    pollInterval: POLL_INTERVAL_MS,
  };
}

/** Resolves when `task` is final, or rejects when `signal` aborts first. */
export function whenFinal(
  registry: TaskRegistry,
  task: TaskRecord,
  signal: AbortSignal,
): Promise<void> {
  if (isTerminal(task.state)) return Promise.resolve();
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const stop = () => {
    unsubscribe();
    signal.removeEventListener("abort", onAbort);
  };
  const onAbort = () => {
    stop();
    reject(signal.reason ?? new Error("aborted"));
  };
  const unsubscribe = registry.events.subscribe((change) => {
    if (change.type === "task" && change.id === task.id && isTerminal(task.state)) {
      stop();
      resolve();
    }
  });
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort();
  return promise;
}

type Handler = (request: { params?: Record<string, unknown> }, ctx: unknown) => Promise<unknown>;

/**
 * Replaces the stored handler of `method` with `wrap(original)`. The SDK's typed surface has no
 * room for a task-augmented `tools/call` answer (a `CreateTaskResult`), so the wrapper sits in
 * front of its own, validated, handler and passes every other call through untouched.
 */
export function wrapRequestHandler(
  server: McpServer,
  method: string,
  wrap: (original: Handler) => Handler,
): void {
  const handlers = (server.server as unknown as { _requestHandlers: Map<string, Handler> })
    ._requestHandlers;
  const original = handlers.get(method);
  if (!original) throw new Error(`No ${method} handler to wrap`);
  handlers.set(method, wrap(original));
}

export interface NativeTasksOptions {
  readonly registry: TaskRegistry;
  readonly owner: string;
  readonly retentionMs: number;
  /** Starts the task behind a task-augmented call of `tool`; `undefined` for a tool that has none. */
  readonly startFor: (
    tool: string,
    args: Record<string, unknown>,
    /** A 2026-07-28 request's client capabilities (its tasks then ask the client in-band). */
    capabilities?: Record<string, unknown>,
  ) => Promise<{ task: TaskRecord; resultOf?: (task: TaskRecord) => CallToolResult }> | undefined;
  /** Told of each task started through a task-augmented call, with its progress token if any. */
  readonly onNativeStart: (task: TaskRecord, progressToken: unknown) => void;
}

const TaskIdParams = z.object({ taskId: z.string().min(1).max(200) }).passthrough();
const ListParams = z.object({ cursor: z.string().max(200).optional() }).passthrough();
const AnyResult = z.record(z.string(), z.unknown());

/** The outstanding input requests of `task`, as the extension's `inputRequests`. */
export function inputRequests(task: TaskRecord, retentionMs: number): Record<string, unknown> {
  return Object.fromEntries(
    [...linksOf(task, retentionMs).parked].map(([key, parked]) => [key, parked.request]),
  );
}

/**
 * Parks `request` on `task` until the client answers it through `tasks/update`, `signal` aborts or
 * `timeoutMs` passes. Keys are never reused within a task's life, as the Tasks extension asks.
 */
export function parkInput(
  task: TaskRecord,
  retentionMs: number,
  request: ParkedInput["request"],
  signal: AbortSignal,
  timeoutMs: number,
): Promise<unknown> {
  const links = linksOf(task, retentionMs);
  const key = `${request.method.replace("/", "-")}-${++links.parkedCount}`;
  const { promise, resolve, reject } = Promise.withResolvers<unknown>();
  const done = () => {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
    links.parked.delete(key);
  };
  const onAbort = () => (done(), reject(signal.reason ?? new Error("aborted")));
  const timer = setTimeout(() => {
    done();
    reject(
      new Error(`The client did not answer ${request.method} (${key}) within ${timeoutMs} ms`),
    );
  }, timeoutMs);
  signal.addEventListener("abort", onAbort, { once: true });
  links.parked.set(key, { request, answer: (response) => (done(), resolve(response)) });
  if (signal.aborted) onAbort();
  return promise;
}

/** Delivers the responses whose keys are outstanding; any other key is ignored. */
export function answerInput(
  task: TaskRecord,
  retentionMs: number,
  responses: Record<string, unknown>,
): void {
  const parked = linksOf(task, retentionMs).parked;
  for (const [key, response] of Object.entries(responses)) {
    const waiting = parked.get(key);
    if (!waiting) continue;
    parked.delete(key);
    waiting.answer(response);
  }
}

/**
 * Awaits a task start for a tool call: the task (with the result its call gives recorded), or a
 * refused start as the tool's own error, as a plain call would report it.
 */
export async function settleStart(
  starting: ReturnType<NativeTasksOptions["startFor"]> & object,
  retentionMs: number,
): Promise<{ task: TaskRecord } | { refused: CallToolResult }> {
  try {
    const { task, resultOf } = await starting;
    if (resultOf) linksOf(task, retentionMs).resultOf = resultOf;
    return { task };
  } catch (error) {
    if (error instanceof TaskError) return { refused: startRefused(error) };
    throw error;
  }
}

/** A refused start as the tool's own error, as a plain call would report it. */
export function startRefused(error: TaskError): CallToolResult {
  return { isError: true, content: [{ type: "text", text: `${error.code}: ${error.message}` }] };
}

export function notFound(id: string): ProtocolError {
  return new ProtocolError(
    INVALID_PARAMS,
    `Failed to retrieve task: no task "${id}" (never existed, not yours, or forgotten after KLYM_RETENTION_S)`,
  );
}

/** Installs the `tasks` capability and its handlers on one session's server. */
export function installNativeTasks(server: McpServer, options: NativeTasksOptions): void {
  const { registry, owner, retentionMs } = options;
  const find = (id: string): TaskRecord => {
    try {
      return registry.get(id, owner);
    } catch (error) {
      if (error instanceof TaskError) throw notFound(id);
      throw error;
    }
  };

  server.server.registerCapabilities({
    tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } },
  } as never);

  wrapRequestHandler(server, "tools/call", (original) => async (request, ctx) => {
    const params = request.params ?? {};
    const taskParams = params.task;
    if (taskParams === undefined || taskParams === null) return await original(request, ctx);
    const name = String(params.name);
    const args = (params.arguments ?? {}) as Record<string, unknown>;
    const starting = options.startFor(name, args);
    if (!starting) {
      throw new ProtocolError(
        METHOD_NOT_FOUND,
        `Tool "${name}" does not run as a task (its execution.taskSupport is forbidden); call it without "task"`,
      );
    }
    const started = await settleStart(starting, retentionMs);
    if ("refused" in started) return started.refused;
    const { task } = started;
    const requested = (taskParams as { ttl?: unknown }).ttl;
    const link = linksOf(task, retentionMs);
    link.ttl = typeof requested === "number" && requested > 0
      ? Math.min(Math.floor(requested), retentionMs)
      : retentionMs;
    const meta = params._meta as { progressToken?: unknown } | undefined;
    options.onNativeStart(task, meta?.progressToken);
    return { task: mcpTask(task, retentionMs) };
  });

  server.server.setRequestHandler(
    "tasks/get",
    { params: TaskIdParams, result: AnyResult },
    ({ taskId }) => mcpTask(find(taskId), retentionMs) as never,
  );

  server.server.setRequestHandler(
    "tasks/list",
    { params: ListParams, result: AnyResult },
    ({ cursor }) => {
      const all = registry.list(undefined, Infinity, owner);
      let from = 0;
      if (cursor !== undefined) {
        const at = all.findIndex((t) => t.id === cursor);
        if (at === -1) {
          throw new ProtocolError(
            INVALID_PARAMS,
            `Invalid cursor "${cursor}"; list from the start`,
          );
        }
        from = at + 1;
      }
      const page = all.slice(from, from + LIST_PAGE_SIZE);
      const more = from + LIST_PAGE_SIZE < all.length;
      return {
        tasks: page.map((t) => mcpTask(t, retentionMs)),
        ...(more && page.length > 0 ? { nextCursor: page.at(-1)!.id } : {}),
      } as never;
    },
  );

  server.server.setRequestHandler(
    "tasks/cancel",
    { params: TaskIdParams, result: AnyResult },
    ({ taskId }) => {
      const task = find(taskId);
      if (isTerminal(task.state)) {
        throw new ProtocolError(
          INVALID_PARAMS,
          `Cannot cancel task "${taskId}": it is already ${mcpStatus(task)}`,
        );
      }
      registry.cancel(taskId, "cancelled by the client (tasks/cancel)", owner);
      return mcpTask(task, retentionMs) as never;
    },
  );

  server.server.setRequestHandler(
    "tasks/result",
    { params: TaskIdParams, result: AnyResult },
    async ({ taskId }, ctx) => {
      const task = find(taskId);
      const mcpReq = (ctx as { mcpReq: { id: RequestId; signal: AbortSignal } }).mcpReq;
      // While this request waits, the task's sampling requests travel on its stream.
      const done = markWaiting(task, retentionMs, server, mcpReq.id);
      try {
        await whenFinal(registry, task, mcpReq.signal);
      } finally {
        done();
      }
      const result = linksOf(task, retentionMs).resultOf(task);
      return {
        ...result,
        _meta: { ...result._meta, [RELATED_TASK_META_KEY]: { taskId: task.id } },
      } as never;
    },
  );
}
