/**
 * One MCP session's live view of its tasks: the sampler each task it starts gets (routed on the
 * request waiting on the task, counted for `input_required`), `notifications/tasks/status` for its
 * task-augmented calls, `notifications/progress` for a caller's `progressToken`, and its tasks' log
 * lines as `notifications/message` once the client has chosen a level: for the session
 * (`logging/setLevel`, 2025), or for one call waiting on a task (its request's
 * `io.modelcontextprotocol/logLevel`, 2026-07-28, on that call's stream only).
 *
 * Bounded: nothing is queued. Changes only mark a task dirty; a timer (every `LIVE_TICK_MS`) reads
 * the registry's own bounded state (status, progress, log buffer from a cursor) and sends at most
 * one message of each sort per task per tick, so a chatty task costs the client a few messages a
 * second however much it prints.
 */
import type { McpServer, RequestId } from "@modelcontextprotocol/server";
import { getLogger } from "@logtape/logtape";
import type { TaskRecord, TaskRegistry } from "../tasks/task_registry.ts";
import { isTerminal } from "../tasks/task_state.ts";
import { type Sampler, samplerFor } from "../llm/sampling.ts";
import type { McpTaskCore, McpTaskStatus } from "./task_core.ts";
import type { TaskToolsSession } from "./task_tools.ts";
import { LOG_LEVELS, type LogLevel } from "./envelope.ts";

const logger = getLogger(["klym", "mcp"]);

const LIVE_TICK_MS = 200;
/** Log lines in one `notifications/message` (one per task per tick). */
const LIVE_LOG_LINES = 100;
const LIVE_LOG_BYTES = 64 * 1024;
/** Tasks a session follows at once; the oldest followed are let go beyond it. */
const LIVE_MAX_TASKS = 1000;

const LEVELS = LOG_LEVELS;
type Level = LogLevel;

interface Followed {
  readonly task: TaskRecord;
  /** Send `notifications/tasks/status` on changes (a task-augmented call). */
  readonly native: boolean;
  lastStatus: McpTaskStatus | undefined;
  logCursor: number;
  /** Progress for a token: a plain call's or a task-augmented one's. */
  progress?: { token: string | number; sent?: string };
  /** A plain call waiting on the task: its notifications travel on that call's stream. */
  related?: RequestId;
  /** The log level that call asked for (2026-07-28), in place of the session's. */
  level?: Level;
}

/** How a plain call waiting on a task wants its log lines (2026-07-28). */
export interface CallLogs {
  /** The level the call's request opted into; no log lines without one. */
  readonly level?: LogLevel | undefined;
  /** The log sequence number already delivered to this call's client (an earlier round's). */
  readonly from?: number;
}

export interface LiveSessionOptions {
  readonly registry: TaskRegistry;
  readonly core: McpTaskCore;
  /** The principal of the session. */
  readonly owner: string;
  /** Whether the server may send its client requests (sampling): not in the 2026-07-28 era. */
  readonly canRequest: boolean;
  /** Why a task this session starts has no model of its client's, when it cannot request. */
  readonly noModelReason?: string;
}

type LogPage = ReturnType<TaskRecord["logs"]["read"]>;

/**
 * One page of `task`'s log lines as a `notifications/message` (level `warning` when stderr lines
 * are among them, else `info`), or `undefined` when the page is empty or below `threshold`.
 */
export function logMessage(
  task: TaskRecord,
  page: LogPage,
  threshold: LogLevel,
): { method: string; params: Record<string, unknown> } | undefined {
  if (page.lines.length === 0) return undefined;
  const level: Level = page.lines.some((l) => l.stream === "stderr") ? "warning" : "info";
  if (LEVELS.indexOf(level) < LEVELS.indexOf(threshold)) return undefined;
  return {
    method: "notifications/message",
    params: {
      level,
      logger: `klym.task.${task.id}`,
      data: {
        task_id: task.id,
        lines: page.lines.map((l) => ({ seq: l.seq, stream: l.stream, text: l.text })),
        ...(page.missed > 0 ? { missed: page.missed } : {}),
      },
    },
  };
}

/** Reads one page of `task`'s log lines from `cursor` for a live message. */
export function livePage(task: TaskRecord, cursor: number): LogPage {
  return task.logs.read(cursor, LIVE_LOG_LINES, LIVE_LOG_BYTES);
}

export class LiveSession implements TaskToolsSession {
  readonly #followed = new Map<string, Followed>();
  readonly #dirty = new Set<string>();
  #level: Level | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #unsubscribe: () => void;
  #closed = false;
  readonly #server: McpServer;
  readonly #core: McpTaskCore;
  readonly #canRequest: boolean;
  readonly owner: string;
  readonly noModelReason?: string;

  constructor(server: McpServer, options: LiveSessionOptions) {
    this.#server = server;
    this.#core = options.core;
    this.#canRequest = options.canRequest;
    this.owner = options.owner;
    if (options.noModelReason !== undefined) this.noModelReason = options.noModelReason;
    this.#unsubscribe = options.registry.events.subscribe((change) => {
      if (!this.#followed.has(change.id)) return;
      this.#dirty.add(change.id);
      this.#schedule();
    });
  }

  /** The client asked for log messages at `level` and above. */
  setLevel(level: string): void {
    if ((LEVELS as readonly string[]).includes(level)) this.#level = level as Level;
    for (const id of this.#followed.keys()) this.#dirty.add(id);
    this.#schedule();
  }

  samplerFor(holder: { record?: TaskRecord }): Sampler | undefined {
    // A 2026-07-28 server cannot send the client requests; its tasks ask in-band or not at all.
    if (!this.#canRequest) return undefined;
    return samplerFor(this.#server, {
      relatedRequest: (signal) => {
        const task = holder.record;
        if (!task) return undefined;
        // A task-augmented call was answered at once: its client, seeing input_required, sends
        // tasks/result, whose stream carries the request.
        if (this.#followed.get(task.id)?.native) {
          return this.#core.whenWaiting(task, this.#server, signal);
        }
        return this.#core.waitingRequest(task, this.#server);
      },
      onPending: (delta) => {
        const task = holder.record;
        if (!task) return;
        this.#core.inputs(task).asked(delta);
        this.#dirty.add(task.id);
        this.#schedule();
      },
    });
  }

  started(task: TaskRecord): void {
    this.#follow(task, false);
  }

  /** A task-augmented call started `task`; with a progress token, progress goes to it. */
  startedNative(task: TaskRecord, progressToken: unknown): void {
    const followed = this.#follow(task, true);
    if (typeof progressToken === "string" || typeof progressToken === "number") {
      followed.progress = { token: progressToken };
    }
  }

  /**
   * A plain call `related` waits on `task`: notifications go on its stream, progress to `token`,
   * and log lines from `logs.from` on at `logs.level` and above when the call asked for them.
   */
  callWaits(task: TaskRecord, related: RequestId, token: unknown, logs: CallLogs = {}): void {
    const followed = this.#follow(task, false);
    followed.related = related;
    if (typeof token === "string" || typeof token === "number") followed.progress = { token };
    if (logs.level !== undefined) followed.level = logs.level;
    if (logs.from !== undefined) followed.logCursor = Math.max(followed.logCursor, logs.from);
  }

  /** The log sequence number delivered so far for `task` (0 when not followed). */
  logCursor(task: TaskRecord): number {
    return this.#followed.get(task.id)?.logCursor ?? 0;
  }

  /** Sends what is pending for `task` now (a waiting call about to answer sends its last progress). */
  flush(task: TaskRecord): void {
    const followed = this.#followed.get(task.id);
    if (followed) this.#flushOne(followed);
  }

  #follow(task: TaskRecord, native: boolean): Followed {
    const existing = this.#followed.get(task.id);
    if (existing && (!native || existing.native)) return existing;
    if (this.#followed.size >= LIVE_MAX_TASKS) {
      const oldest = this.#followed.keys().next().value!;
      this.#followed.delete(oldest);
    }
    const followed: Followed = {
      task,
      native,
      lastStatus: native ? this.#core.status(task) : undefined,
      logCursor: existing?.logCursor ?? 0,
      ...(existing?.progress ? { progress: existing.progress } : {}),
      ...(existing?.related === undefined ? {} : { related: existing.related }),
    };
    this.#followed.set(task.id, followed);
    this.#dirty.add(task.id);
    this.#schedule();
    return followed;
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, LIVE_TICK_MS);
  }

  #flush(): void {
    const ids = [...this.#dirty];
    this.#dirty.clear();
    for (const id of ids) {
      const followed = this.#followed.get(id);
      if (!followed) continue;
      this.#flushOne(followed);
      const task = followed.task;
      const level = followed.level ?? this.#level;
      const caughtUp = followed.logCursor >= task.logs.lastSeq || level === undefined;
      if (isTerminal(task.state) && caughtUp) this.#followed.delete(id);
      else if (!caughtUp) this.#dirty.add(id);
    }
    if (this.#dirty.size > 0) this.#schedule();
  }

  #flushOne(f: Followed): void {
    const task = f.task;
    if (f.native) {
      const status = this.#core.status(task);
      if (status !== f.lastStatus) {
        f.lastStatus = status;
        this.#notify({
          method: "notifications/tasks/status",
          params: { ...this.#core.view(task) },
        });
      }
    }
    if (f.progress && task.progress) {
      const p = task.progress;
      const key = JSON.stringify(p);
      if (key !== f.progress.sent) {
        f.progress.sent = key;
        this.#notify({
          method: "notifications/progress",
          params: {
            progressToken: f.progress.token,
            progress: p.done,
            ...(p.total === undefined ? {} : { total: p.total }),
            ...(p.message === undefined ? {} : { message: p.message }),
            ...(f.native
              ? { _meta: { "io.modelcontextprotocol/related-task": { taskId: task.id } } }
              : {}),
          },
        }, f.related);
      }
    }
    const level = f.level ?? this.#level;
    if (level !== undefined && f.logCursor < task.logs.lastSeq) {
      const page = livePage(task, f.logCursor);
      f.logCursor = page.nextCursor;
      const message = logMessage(task, page, level);
      if (message) this.#notify(message, f.related);
    }
  }

  #notify(notification: { method: string; params: Record<string, unknown> }, related?: RequestId) {
    if (this.#closed) return;
    this.#server.server.notification(
      notification,
      related === undefined ? undefined : { relatedRequestId: related },
    ).catch((error: unknown) => {
      logger.debug("A live notification was not delivered: {error}", { error });
    });
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe();
    this.#followed.clear();
    this.#dirty.clear();
  }
}
