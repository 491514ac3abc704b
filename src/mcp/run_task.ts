/**
 * `run_task`: starts a Klym task and answers with its final result. Called plainly it waits,
 * sending `notifications/progress` when the call carries a `progressToken` (and cancelling the task
 * when the call is cancelled); called as an MCP task (`execution.taskSupport: "optional"`) it
 * answers with the task at once (`era_2025.ts`, `era_2026.ts`). Either way the task is an ordinary registry
 * task, visible to `check_task_status`, `list_tasks`, `tasks/get` and the dashboard.
 *
 * Called plainly in the 2026-07-28 era, where the server sends its client no requests, a task that
 * asks the client's own model (no `KLYM_MODEL`) makes the call answer an input-required result
 * holding the `sampling/createMessage` requests the task waits on, with a `requestState` naming the
 * task; the client's retry carries the answers (`inputResponses`) and that state, and the call
 * waits on the same task again, until it is final. So a client that answers input-required
 * results (FastMCP's `sampling_handler`, the SDKs' drivers) runs an `agent` on its own model
 * without knowing about tasks. The call's log lines go on its stream when its request names a
 * log level (`io.modelcontextprotocol/logLevel`).
 */
import {
  type CreateMessageRequestParams,
  inputRequired,
  type McpServer,
  type ServerContext,
} from "@modelcontextprotocol/server";
import { KlymError } from "../errors.ts";
import { z } from "zod";
import type { Config } from "../config.ts";
import type { TaskRecord, TaskRegistry } from "../tasks/task_registry.ts";
import type { KindCatalog } from "../tasks/kind_catalog.ts";
import { finalResult, type StartInput, startInput, startTask } from "./task_tools.ts";
import type { TaskToolsSession } from "./task_tools.ts";
import { TaskSummary } from "../tasks/task_summary.ts";
import type { McpTaskCore } from "./task_core.ts";
import type { LiveSession } from "./live_session.ts";
import { requestCapabilities, requestLogLevel } from "./envelope.ts";
import { guarded } from "./tool_results.ts";
import { leanOutput } from "./lean_schema.ts";

/** `requestState` of a plain 2026-07-28 call waiting on a task: `klym-run:<task id>:<log cursor>`. */
const STATE = /^klym-run:(t_[0-9a-z]{1,100}):(\d{1,15})$/;

export interface RunTaskOptions {
  readonly registry: TaskRegistry;
  readonly core: McpTaskCore;
  readonly config: Config;
  readonly kinds: KindCatalog;
  /** The era the server serves; `modern` calls ask the client's model in-band. */
  readonly era: "legacy" | "modern";
  /** The session a 2026-07-28 call starts its task with: its model asked through parked requests. */
  readonly askingSession: (capabilities: Record<string, unknown>) => TaskToolsSession;
}

export function registerRunTask(
  server: McpServer,
  live: LiveSession,
  options: RunTaskOptions,
): void {
  const { registry, core, config, kinds } = options;
  const tool = server.registerTool("run_task", {
    title: "Run a task and wait for its result",
    description:
      "Runs a task like start_async_agent_task but answers only when it has finished, with its status and result " +
      "(progress arrives as notifications when the call carries a progressToken). Clients that speak MCP tasks can call it " +
      "as a task and poll tasks/get. For work longer than your client's request timeout, prefer start_async_agent_task " +
      `and check_task_status. Known kinds: ${kinds.list().join(", ") || "none"}.`,
    inputSchema: startInput(config),
    outputSchema: leanOutput(TaskSummary.extend({ result: z.unknown().optional() })),
  }, (input, ctx) =>
    guarded(async () => {
      if (options.era === "modern") return await runInBand(input, ctx);
      const task = startTask(registry, live, input, ctx.mcpReq._meta);
      live.callWaits(task, ctx.mcpReq.id, ctx.mcpReq._meta?.progressToken);
      const done = core.markWaiting(task, server, ctx.mcpReq.id);
      try {
        await core.whenFinal(task, ctx.mcpReq.signal);
      } catch (error) {
        registry.cancel(task.id, "the client cancelled its run_task call", live.owner);
        throw error;
      } finally {
        done();
      }
      live.flush(task);
      return finalResult(task);
    }));
  tool.execution = { taskSupport: "optional" };

  /** One round of a plain 2026-07-28 call: start or resume the task, then wait on it. */
  async function runInBand(input: StartInput, ctx: ServerContext) {
    const state = ctx.mcpReq.requestState<string>();
    let task: TaskRecord;
    let logFrom = 0;
    if (state === undefined) {
      const session = options.askingSession(requestCapabilities({}, ctx));
      task = startTask(registry, session, input);
    } else {
      const match = STATE.exec(state);
      if (!match) {
        throw new KlymError(
          "INVALID_INPUT",
          `Cannot resume run_task: "requestState" ${
            JSON.stringify(state.slice(0, 100))
          } is not one Klym sent; retry with the requestState of the input-required result, or call run_task anew without one`,
        );
      }
      // Only the caller's own task: another principal's id is no task at all (TASK_NOT_FOUND).
      task = registry.get(match[1]!, live.owner);
      logFrom = Number(match[2]);
      // Keys not outstanding (never issued, answered already) are ignored, as for tasks/update.
      core.inputs(task).answer(ctx.mcpReq.inputResponses ?? {});
    }
    const level = requestLogLevel({}, ctx);
    live.callWaits(task, ctx.mcpReq.id, ctx.mcpReq._meta?.progressToken, { level, from: logFrom });
    let outcome;
    try {
      outcome = await core.whenFinalOrAsking(task, ctx.mcpReq.signal);
    } catch (error) {
      registry.cancel(task.id, "the client cancelled its run_task call", live.owner);
      throw error;
    }
    live.flush(task);
    if (outcome === "final") return finalResult(task);
    // A task parks only sampling requests (`askingSampler`).
    const asked = Object.entries(core.inputs(task).outstanding()).map(([key, request]) =>
      [key, inputRequired.createMessage(request.params as CreateMessageRequestParams)] as const
    );
    return inputRequired({
      inputRequests: Object.fromEntries(asked),
      requestState: `klym-run:${task.id}:${live.logCursor(task)}`,
    });
  }
}
