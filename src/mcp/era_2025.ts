/**
 * MCP's own tasks of protocol 2025-11-25: task-augmented `tools/call`, `tasks/get`, `tasks/result`,
 * `tasks/list` and `tasks/cancel` (and `notifications/tasks/status`, sent by the session's
 * `LiveSession`), over the task core (`task_core.ts`) both eras share. The SDK (v2.4) parses the
 * task vocabulary but has no runtime for it; this file is that runtime's 2025 adapter.
 */
import { type McpServer, ProtocolError, RELATED_TASK_META_KEY } from "@modelcontextprotocol/server";
import { z } from "zod";
import type { TaskRecord, TaskRegistry } from "../tasks/task_registry.ts";
import { isTerminal } from "../tasks/task_state.ts";
import {
  AnyResult,
  INVALID_PARAMS,
  type McpTaskCore,
  type StartFor,
  TaskIdParams,
} from "./task_core.ts";
import { wrapRequestHandler } from "./sdk_seam.ts";

const LIST_PAGE_SIZE = 50;
const METHOD_NOT_FOUND = -32601;

export interface Era2025Options {
  readonly registry: TaskRegistry;
  readonly core: McpTaskCore;
  /** The principal of the session. */
  readonly owner: string;
  readonly startFor: StartFor;
  /** Told of each task started through a task-augmented call, with its progress token if any. */
  readonly onNativeStart: (task: TaskRecord, progressToken: unknown) => void;
}

const ListParams = z.object({ cursor: z.string().max(200).optional() }).passthrough();

/** Installs the `tasks` capability and its handlers on one session's server. */
export function installNativeTasks(server: McpServer, options: Era2025Options): void {
  const { registry, core, owner } = options;

  server.server.registerCapabilities({
    tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } },
  });

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
    const started = await core.start(starting);
    if ("refused" in started) return started.refused;
    const { task } = started;
    core.grantTtl(task, (taskParams as { ttl?: unknown }).ttl);
    const meta = params._meta as { progressToken?: unknown } | undefined;
    options.onNativeStart(task, meta?.progressToken);
    return { task: core.view(task) };
  });

  server.server.setRequestHandler(
    "tasks/get",
    { params: TaskIdParams, result: AnyResult },
    ({ taskId }) => ({ ...core.view(core.find(taskId, owner)) }),
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
        tasks: page.map((t) => core.view(t)),
        ...(more && page.length > 0 ? { nextCursor: page.at(-1)!.id } : {}),
      };
    },
  );

  server.server.setRequestHandler(
    "tasks/cancel",
    { params: TaskIdParams, result: AnyResult },
    ({ taskId }) => {
      const task = core.find(taskId, owner);
      if (isTerminal(task.state)) {
        throw new ProtocolError(
          INVALID_PARAMS,
          `Cannot cancel task "${taskId}": it is already ${core.status(task)}`,
        );
      }
      registry.cancel(taskId, "cancelled by the client (tasks/cancel)", owner);
      return { ...core.view(task) };
    },
  );

  server.server.setRequestHandler(
    "tasks/result",
    { params: TaskIdParams, result: AnyResult },
    async ({ taskId }, ctx) => {
      const task = core.find(taskId, owner);
      // While this request waits, the task's sampling requests travel on its stream.
      const done = core.markWaiting(task, server, ctx.mcpReq.id);
      try {
        await core.whenFinal(task, ctx.mcpReq.signal);
      } finally {
        done();
      }
      const result = core.resultOf(task);
      return {
        ...result,
        _meta: { ...result._meta, [RELATED_TASK_META_KEY]: { taskId: task.id } },
      };
    },
  );
}
