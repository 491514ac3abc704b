/**
 * A task as every face shows it: the MCP tools (`check_task_status`, `list_tasks`, `run_task`),
 * the dashboard's JSON API and, through its type, the CLI. Times are ISO 8601 strings; the owner
 * is shown to admins only (`KLYM_ADMINS`).
 */
import { z } from "zod";
import { startedAtOf, TASK_STATUSES } from "./task_state.ts";
import type { LogPage } from "./log_buffer.ts";
import type { TaskRecord } from "./task_store.ts";

/** An epoch-milliseconds stamp as ISO 8601; `undefined` stays `undefined`. */
export const isoTime = (ms: number | undefined) =>
  ms === undefined ? undefined : new Date(ms).toISOString();

/** A task's status, as the tools' schemas name it. */
export const TaskStatusSchema = z.enum(TASK_STATUSES);

/** The summary's schema (the tools' output schemas extend it). */
export const TaskSummary = z.object({
  task_id: z.string(),
  /** The principal that started the task; shown to admins only (`KLYM_ADMINS`). */
  owner: z.string().optional(),
  kind: z.string(),
  status: TaskStatusSchema,
  created_at: z.string(),
  started_at: z.string().optional(),
  /** When the task's own code began, after its process and module were ready. */
  code_started_at: z.string().optional(),
  finished_at: z.string().optional(),
  progress: z.object({
    done: z.number(),
    total: z.number().optional(),
    message: z.string().optional(),
  }).optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});

export type TaskSummary = z.infer<typeof TaskSummary>;

/** A task's summary; `withOwner` for an admin's view. */
export function summary(task: TaskRecord, withOwner = false): TaskSummary {
  const state = task.state;
  const startedAt = startedAtOf(state);
  return {
    task_id: task.id,
    ...(withOwner ? { owner: task.owner } : {}),
    kind: task.kind,
    status: state.status,
    created_at: isoTime(task.createdAt)!,
    ...(startedAt === undefined ? {} : { started_at: isoTime(startedAt)! }),
    ...(task.codeStartedAt === undefined ? {} : { code_started_at: isoTime(task.codeStartedAt)! }),
    ...("finishedAt" in state ? { finished_at: isoTime(state.finishedAt)! } : {}),
    ...(task.progress ? { progress: task.progress } : {}),
    ...("error" in state ? { error: state.error } : {}),
  };
}

/** A page of a task's logs as the tools and the dashboard answer it, with what comes next. */
export function logPageView(task: TaskRecord, page: LogPage) {
  return {
    logs: page.lines,
    next_log_cursor: page.nextCursor,
    more_logs: page.nextCursor < task.logs.lastSeq,
    logs_dropped: task.logs.dropped,
    logs_missed: page.missed,
  };
}
