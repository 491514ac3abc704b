/**
 * The four MCP tools of the contract. Each validates its input with zod (the SDK turns a schema
 * failure into an `isError` result naming the field), and turns a `KlymError` into an `isError`
 * result whose message says the fix.
 */
import type { CallToolResult, McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";
import { KlymError } from "../errors.ts";
import type { Config } from "../config.ts";
import type { TaskRecord, TaskRegistry } from "../tasks/task_registry.ts";
import type { KindCatalog } from "../tasks/kind_catalog.ts";
import type { TraceContext } from "../tasks/task_observer.ts";
import {
  isoTime,
  logPageView,
  summary,
  TaskStatusSchema,
  TaskSummary,
} from "../tasks/task_summary.ts";
import type { Sampler } from "../llm/sampling.ts";
import { guarded, ok } from "./tool_results.ts";
import { utf8Length } from "../text.ts";
import { MAX_SAVE_REPLY_CHARS, type SavedSummary } from "../protocol.ts";
import { scopeOf, viewerOf } from "../principals.ts";
import { leanOutput } from "./lean_schema.ts";

const MAX_LOG_LINES_PER_READ = 1000;
const DEFAULT_LOG_LINES_PER_READ = 200;
const DEFAULT_LIST_LIMIT = 50;
const MAX_LIST_LIMIT = 1000;
/** Room kept in every answer for the fields around logs and tasks. */
const ANSWER_OVERHEAD_BYTES = 16 * 1024;

const TaskId = z.string({
  error: '"task_id" must be the string returned by start_async_agent_task',
})
  .min(1, '"task_id" must not be empty')
  .max(128, '"task_id" is too long; pass the id returned by start_async_agent_task');

/**
 * One save as `check_task_status` shows it, declared in zod for the SDK: the protocol's
 * `SavedSummary` is a shape (src/shape.ts), which a task's process checks without loading zod.
 */
const SavedSummaryOutput = z.object({
  seq: z.number().int().min(0),
  tools: z.array(z.string().max(128)).max(8),
  ok: z.boolean(),
  time: z.string().max(64),
  reply: z.string().max(MAX_SAVE_REPLY_CHARS),
});
/** True when `A` and `B` are the same type. */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;
// The compiler holds the two declarations to one type: a field changed in one fails here.
const _savedSummaryMatches: Same<z.infer<typeof SavedSummaryOutput>, SavedSummary> = true;

/** What the tools need to know of the session they serve. */
export interface TaskToolsSession {
  /** The principal of the session: tasks it starts are its own, and it sees no other's. */
  readonly owner: string;
  /** A sampler for a task this session starts (see `live_session.ts`), `undefined` without one. */
  samplerFor(task: { record?: TaskRecord }): Sampler | undefined;
  /** Why `samplerFor` gives none, when there is more to say than "the client offers no sampling". */
  readonly noModelReason?: string;
  /** Told of each task the session starts, for its live notifications. */
  started(task: TaskRecord): void;
}

/** The input of a task start, shared by `start_async_agent_task` and `run_task`. */
export function startInput(config: Config) {
  return z.object({
    kind: z.string({ error: '"kind" must be a string naming a task kind' }).default("agent")
      .describe("The task kind to run (default agent)."),
    prompt: z.string({ error: '"prompt" must be a string' }).optional()
      .describe(`What the task should do; at most ${config.maxPromptBytes} bytes.`),
    params: z.record(z.string(), z.unknown(), {
      error: '"params" must be a JSON object such as {"key": "value"}',
    }).optional().describe(
      `Kind-specific inputs; at most ${config.maxParamsBytes} bytes as JSON.`,
    ),
    model: z.string({ error: '"model" must be a string such as "openai:gpt-4o-mini"' }).optional()
      .describe("A configured model (list_models) for this task; default KLYM_MODEL."),
    timeout_s: z.number({ error: '"timeout_s" must be a number of seconds' }).int(
      '"timeout_s" must be a whole number of seconds',
    ).min(1, '"timeout_s" must be at least 1').max(
      config.maxTimeoutS,
      `"timeout_s" must be at most ${config.maxTimeoutS} (KLYM_MAX_TIMEOUT_S)`,
    ).optional().describe(
      `Deadline in seconds (default ${config.defaultTimeoutS}, max ${config.maxTimeoutS}); past it the task ends as timed_out.`,
    ),
  });
}

export type StartInput = z.infer<ReturnType<typeof startInput>>;

/** The W3C trace context a request carries in `_meta`, if it carries a plausible one. */
export function traceOf(meta: unknown): TraceContext | undefined {
  const { traceparent, tracestate } = (meta ?? {}) as Record<string, unknown>;
  if (typeof traceparent !== "string" || traceparent.length > 256) return undefined;
  return typeof tracestate === "string" && tracestate.length <= 512
    ? { traceparent, tracestate }
    : { traceparent };
}

/** Starts a task for `session` from a tool's input (`meta`: the request's `_meta`). */
export function startTask(
  registry: TaskRegistry,
  session: TaskToolsSession,
  { kind, prompt, params, model, timeout_s }: StartInput,
  meta?: unknown,
): TaskRecord {
  const holder: { record?: TaskRecord } = {};
  const task = registry.start({
    kind,
    prompt,
    params,
    model,
    timeoutS: timeout_s,
    owner: session.owner,
    sampler: session.samplerFor(holder),
    noModelReason: session.noModelReason,
    trace: traceOf(meta),
  });
  holder.record = task;
  session.started(task);
  return task;
}

/** A finished task as a tool result: its summary and result, `isError` unless it succeeded. */
export function finalResult(task: TaskRecord): CallToolResult {
  const state = task.state;
  const structured = {
    ...summary(task),
    ...(state.status === "succeeded" ? { result: JSON.parse(state.resultJson) } : {}),
  };
  if (state.status === "succeeded") return ok(structured);
  const error = "error" in state ? `${state.error.code}: ${state.error.message}` : state.status;
  return {
    isError: true,
    content: [{ type: "text", text: `Task ${task.id} ${state.status}: ${error}` }],
    structuredContent: structured,
  };
}

/** What the task tools of one session use. */
export interface TaskToolsOptions {
  readonly registry: TaskRegistry;
  readonly kinds: KindCatalog;
  readonly config: Config;
  readonly session: TaskToolsSession;
}

export function registerTaskTools(
  server: McpServer,
  { registry, kinds, config, session }: TaskToolsOptions,
): void {
  // An admin (KLYM_ADMINS) reads, lists and cancels every principal's tasks, seeing their owners.
  const viewer = viewerOf(config, session.owner);
  const scope = scopeOf(viewer);
  server.registerTool("start_async_agent_task", {
    title: "Start a background task",
    description:
      "Starts a long-running task in the background and returns its task_id at once, without waiting for the work. " +
      "Then poll check_task_status with that task_id every few seconds, passing back next_log_cursor as log_cursor " +
      "to read only new log lines, until status is succeeded, failed, cancelled, timed_out or interrupted; those never change again. " +
      `Known kinds: ${kinds.list().join(", ") || "none"}. ` +
      "Stop a task with cancel_task.",
    inputSchema: startInput(config),
    outputSchema: leanOutput(z.object({
      task_id: z.string(),
      status: TaskStatusSchema,
      created_at: z.string(),
    })),
  }, (input, ctx) =>
    guarded(async () => {
      const task = startTask(registry, session, input, ctx.mcpReq._meta);
      // Durable before the answer: with a shared store, any node can see it now.
      await registry.durable();
      return ok({
        task_id: task.id,
        status: task.state.status,
        created_at: isoTime(task.createdAt)!,
      });
    }));

  server.registerTool("check_task_status", {
    title: "Check a background task",
    description:
      "Returns a task's status, progress, the log lines (stdout/stderr) written since log_cursor, and its result or error once finished. " +
      "Pass next_log_cursor back as log_cursor on the next call to get only new lines; logs_dropped counts lines lost to the per-task log limit, " +
      "logs_missed those of them after your cursor that you will never see. " +
      "Keep polling while status is queued or running; succeeded, failed, cancelled, timed_out and interrupted are final " +
      "(interrupted: Klym restarted while the task was alive; its logs up to then are kept).",
    inputSchema: z.object({
      task_id: TaskId,
      log_cursor: z.number({
        error: '"log_cursor" must be a number: the next_log_cursor of the previous call',
      })
        .int('"log_cursor" must be a whole number').min(0, '"log_cursor" must be 0 or more')
        .default(0)
        .describe("Return log lines after this one (0 = from the start)."),
      max_log_lines: z.number({ error: '"max_log_lines" must be a number' }).int().min(
        0,
        '"max_log_lines" must be 0 or more',
      ).max(MAX_LOG_LINES_PER_READ, `"max_log_lines" must be at most ${MAX_LOG_LINES_PER_READ}`)
        .default(DEFAULT_LOG_LINES_PER_READ).describe("At most this many lines in one answer."),
    }),
    outputSchema: leanOutput(TaskSummary.extend({
      logs: z.array(z.object({
        seq: z.number(),
        stream: z.enum(["stdout", "stderr"]),
        time: z.string(),
        text: z.string(),
      })),
      next_log_cursor: z.number(),
      more_logs: z.boolean(),
      logs_dropped: z.number(),
      logs_missed: z.number(),
      /** The task's last saves to grynya, each with grynya's reply (or why it did not land). */
      saves: z.array(SavedSummaryOutput).optional(),
      result: z.unknown().optional(),
    })),
  }, ({ task_id, log_cursor, max_log_lines }) =>
    guarded(() => {
      const task = registry.get(task_id, scope);
      // An interrupted task may have lost its last lines with the process: a cursor past them
      // reads nothing rather than failing.
      if (log_cursor > task.logs.lastSeq && task.state.status !== "interrupted") {
        throw new KlymError(
          "INVALID_INPUT",
          `"log_cursor" ${log_cursor} is past the task's last log line (${task.logs.lastSeq}); pass the next_log_cursor you were given, or 0`,
        );
      }
      const resultJson = task.state.status === "succeeded" ? task.state.resultJson : undefined;
      // An answer carries its content twice (structured and as JSON text): logs get what is left.
      const saves = task.saves.length ? task.saves : undefined;
      const room = (config.maxAnswerBytes - ANSWER_OVERHEAD_BYTES) / 2 -
        (resultJson === undefined ? 0 : utf8Length(resultJson)) -
        (saves === undefined ? 0 : utf8Length(JSON.stringify(saves)));
      const page = task.logs.read(log_cursor, max_log_lines, room);
      return ok({
        ...summary(task, viewer.admin),
        ...logPageView(task, page),
        ...(saves === undefined ? {} : { saves }),
        ...(resultJson === undefined ? {} : { result: JSON.parse(resultJson) }),
      });
    }));

  server.registerTool("cancel_task", {
    title: "Cancel a background task",
    description:
      "Ends a queued or running task as cancelled: its code is asked to stop, and its process is killed after a short grace if it does not. " +
      "Idempotent: a task that already finished keeps its status, which is returned.",
    inputSchema: z.object({
      task_id: TaskId,
      reason: z.string().max(1000, '"reason" must be at most 1000 characters').optional(),
    }),
    outputSchema: leanOutput(z.object({ task_id: z.string(), status: TaskStatusSchema })),
  }, ({ task_id, reason }) =>
    guarded(async () => {
      registry.cancel(task_id, reason ?? "cancelled by the client", scope);
      // Final before the answer on every node; a task that ended first elsewhere keeps its end.
      await registry.durable();
      const task = registry.get(task_id, scope);
      return ok({ task_id: task.id, status: task.state.status });
    }));

  server.registerTool(
    "list_tasks",
    {
      title: "List background tasks",
      description:
        "Lists queued, running and recently finished tasks, newest first, optionally only those with one status. " +
        "Finished tasks are kept for a limited time (KLYM_RETENTION_S). " +
        "Each principal sees its own tasks; an admin (KLYM_ADMINS) sees every principal's, each with its owner.",
      inputSchema: z.object({
        status: TaskStatusSchema.optional().describe("Only tasks with this status."),
        limit: z.number().int().min(1, '"limit" must be at least 1').max(
          MAX_LIST_LIMIT,
          `"limit" must be at most ${MAX_LIST_LIMIT}`,
        ).default(DEFAULT_LIST_LIMIT),
      }),
      outputSchema: leanOutput(z.object({
        tasks: z.array(TaskSummary),
        counts: z.record(z.string(), z.number()),
        /** True when fewer tasks than asked were returned to keep the answer within its cap. */
        truncated: z.boolean(),
      })),
    },
    ({ status, limit }) =>
      guarded(() => {
        const room = (config.maxAnswerBytes - ANSWER_OVERHEAD_BYTES) / 2;
        const tasks: TaskSummary[] = [];
        let bytes = 0;
        const found = registry.list(status, limit, scope);
        for (const task of found) {
          const item = summary(task, viewer.admin);
          bytes += utf8Length(JSON.stringify(item));
          if (bytes > room) break;
          tasks.push(item);
        }
        return ok({
          tasks,
          counts: registry.counts(scope),
          truncated: tasks.length < found.length,
        });
      }),
  );
}
