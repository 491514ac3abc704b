/**
 * The Tasks extension of protocol 2026-07-28 (`io.modelcontextprotocol/tasks`, SEP-2663), over the
 * task core (`task_core.ts`) the 2025-11-25 `tasks/*` share: a task is one task whichever way it
 * was started or is read.
 *
 * Task creation is server-directed: a `tools/call` of a tool that runs as a task, from a request
 * whose client capabilities declare the extension, answers a flat `CreateTaskResult`
 * (`resultType: "task"`); the same call without the extension waits for the result as before.
 * `tasks/get` answers the task with its result (or its pending input requests) inline,
 * `tasks/update` delivers input responses, and `tasks/cancel` acknowledges with an empty result.
 * A `tasks/get` whose request names a log level (`io.modelcontextprotocol/logLevel`) gets the
 * task's log lines since the last such poll as `notifications/message` on its own stream.
 *
 * Status mapping: queued/running → `working` (`input_required` while the task waits on input the
 * client must give), any finished task but a cancelled one → `completed` with the tool's result
 * (`isError` unless it succeeded: a failed tool is not a JSON-RPC error), cancelled → `cancelled`.
 */
import { type McpServer, ProtocolError, type ServerContext } from "@modelcontextprotocol/server";
import { z } from "zod";
import type { TaskRecord, TaskRegistry } from "../tasks/task_registry.ts";
import { isTerminal } from "../tasks/task_state.ts";
import { CLIENT_CAPABILITIES_KEY, requestCapabilities, requestLogLevel } from "./envelope.ts";
import { livePage, logMessage } from "./live_session.ts";
import {
  AnyResult,
  INVALID_PARAMS,
  type McpTaskCore,
  type StartFor,
  TaskIdParams,
} from "./task_core.ts";
import { wrapRequestHandler } from "./sdk_seam.ts";

export const TASKS_EXTENSION = "io.modelcontextprotocol/tasks";
const MISSING_REQUIRED_CLIENT_CAPABILITY = -32021;

export interface Era2026Options {
  readonly registry: TaskRegistry;
  readonly core: McpTaskCore;
  /** The principal of the request. */
  readonly owner: string;
  readonly startFor: StartFor;
}

function declaresTasks(request: { params?: Record<string, unknown> }, ctx: ServerContext): boolean {
  const extensions = requestCapabilities(request, ctx).extensions as
    | Record<string, unknown>
    | undefined;
  return Boolean(extensions && typeof extensions === "object" && TASKS_EXTENSION in extensions);
}

function missingExtension(method: string): ProtocolError {
  return new ProtocolError(
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    `Missing required client capability: ${method} needs the ${TASKS_EXTENSION} extension; ` +
      `declare it in _meta["${CLIENT_CAPABILITIES_KEY}"].extensions`,
    { requiredCapabilities: { extensions: { [TASKS_EXTENSION]: {} } } },
  );
}

/** A task as the extension's `Task`: `ttlMs` and `pollIntervalMs` in place of 2025's names. */
function extensionTask(core: McpTaskCore, task: TaskRecord): Record<string, unknown> {
  const { ttl, pollInterval, status, ...rest } = core.view(task, "modern");
  const mapped = !isTerminal(task.state)
    ? status
    : task.state.status === "cancelled"
    ? "cancelled"
    : "completed";
  return { ...rest, status: mapped, ttlMs: ttl, pollIntervalMs: pollInterval };
}

/** The task with what its status carries inline: the result once completed, pending input. */
function detailedTask(core: McpTaskCore, task: TaskRecord): Record<string, unknown> {
  const base = extensionTask(core, task);
  if (base.status === "completed") {
    // The result is the tool call's own 2026-07-28 result, `resultType` and all.
    return { ...base, result: { ...core.resultOf(task), resultType: "complete" } };
  }
  if (base.status === "input_required") {
    return { ...base, inputRequests: core.inputs(task).outstanding() };
  }
  return base;
}

// The SDK lifts `inputResponses` out of the params into `ctx.mcpReq.inputResponses`.
const UpdateParams = TaskIdParams.extend({
  inputResponses: z.record(z.string(), z.unknown()).optional(),
}).passthrough();

/** Installs the extension's capability and handlers on a 2026-07-28 server. */
export function installTasksExtension(server: McpServer, options: Era2026Options): void {
  const { registry, core, owner } = options;
  // Each method checks the extension itself, so its error names the method that needs it.
  const find = (method: string, params: Record<string, unknown>, ctx: ServerContext) => {
    if (!declaresTasks({ params }, ctx)) throw missingExtension(method);
    const task = core.find(String(params.taskId), owner);
    core.touch(task);
    return task;
  };

  server.server.registerCapabilities({ extensions: { [TASKS_EXTENSION]: {} } });

  wrapRequestHandler(server, "tools/call", (original) => async (request, ctx) => {
    const params = request.params ?? {};
    if (!declaresTasks(request, ctx)) return await original(request, ctx);
    const starting = options.startFor(
      String(params.name),
      (params.arguments ?? {}) as Record<string, unknown>,
      requestCapabilities(request, ctx),
    );
    if (!starting) return await original(request, ctx);
    const started = await core.start(starting);
    if ("refused" in started) return started.refused;
    // Its client holds no call open: the task lives on while the client polls it.
    core.lease(started.task);
    // The task is in the registry before this answer leaves: an immediate tasks/get finds it.
    return { resultType: "task", ...extensionTask(core, started.task) };
  });

  server.server.setRequestHandler(
    "tasks/get",
    { params: TaskIdParams, result: AnyResult },
    async (params, ctx) => {
      const task = find("tasks/get", params, ctx);
      // Log lines since the last poll, on this request's stream, when it names a log level.
      const level = requestLogLevel({ params }, ctx);
      if (level !== undefined) {
        const page = livePage(task, core.polledLogs(task));
        core.polledLogs(task, page.nextCursor);
        const message = logMessage(task, page, level);
        if (message) await ctx.mcpReq.notify(message as never);
      }
      return detailedTask(core, task);
    },
  );

  server.server.setRequestHandler(
    "tasks/cancel",
    { params: TaskIdParams, result: AnyResult },
    (params, ctx) => {
      const task = find("tasks/cancel", params, ctx);
      // Idempotent: a task already final keeps its status, and the answer is the same ack.
      if (!isTerminal(task.state)) {
        registry.cancel(task.id, "cancelled by the client (tasks/cancel)", owner);
      }
      return {};
    },
  );

  server.server.setRequestHandler(
    "tasks/update",
    { params: UpdateParams, result: AnyResult },
    (params, ctx) => {
      const task = find("tasks/update", params, ctx);
      // The SDK lifts `inputResponses` out of the params; a value that is no object is refused on
      // the wire before (`http/retry_fields.ts`), an entry that is no bare response object here.
      const responses = ctx.mcpReq.inputResponses ?? params.inputResponses;
      if (responses === undefined) {
        throw new ProtocolError(
          INVALID_PARAMS,
          `Cannot update task "${task.id}": "inputResponses" is missing; send the answers by the keys tasks/get listed under inputRequests`,
        );
      }
      const dropped = ctx.mcpReq.droppedInputResponseKeys ?? [];
      if (dropped.length > 0) {
        throw new ProtocolError(
          INVALID_PARAMS,
          `Cannot update task "${task.id}": "inputResponses" entries ${
            dropped.map((k) => JSON.stringify(k)).join(", ")
          } are not bare result objects (a CreateMessageResult has role, content and model; no method/result wrapper)`,
        );
      }
      // Keys not outstanding (never issued, answered already) are ignored, as the extension asks.
      core.inputs(task).answer(responses);
      return {};
    },
  );
}
