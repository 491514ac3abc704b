/**
 * `run_task`: starts a Klym task and answers with its final result. Called plainly it waits,
 * sending `notifications/progress` when the call carries a `progressToken` (and cancelling the task
 * when the call is cancelled); called as an MCP task (`execution.taskSupport: "optional"`) it
 * answers with the task at once (`era_2025.ts`, `era_2026.ts`). Either way the task is an ordinary registry
 * task, visible to `check_task_status`, `list_tasks`, `tasks/get` and the dashboard.
 */
import type { McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";
import type { Config } from "../config.ts";
import type { TaskRegistry } from "../tasks/task_registry.ts";
import type { KindCatalog } from "../tasks/kind_catalog.ts";
import { finalResult, startInput, startTask } from "./task_tools.ts";
import { TaskSummary } from "../tasks/task_summary.ts";
import type { McpTaskCore } from "./task_core.ts";
import type { LiveSession } from "./live_session.ts";
import { guarded } from "./tool_results.ts";

export interface RunTaskOptions {
  readonly registry: TaskRegistry;
  readonly core: McpTaskCore;
  readonly config: Config;
  readonly kinds: KindCatalog;
}

export function registerRunTask(
  server: McpServer,
  live: LiveSession,
  { registry, core, config, kinds }: RunTaskOptions,
): void {
  const tool = server.registerTool("run_task", {
    title: "Run a task and wait for its result",
    description:
      "Runs a task like start_async_agent_task but answers only when it has finished, with its status and result " +
      "(progress arrives as notifications when the call carries a progressToken). Clients that speak MCP tasks can call it " +
      "as a task and poll tasks/get. For work longer than your client's request timeout, prefer start_async_agent_task " +
      `and check_task_status. Known kinds: ${kinds.list().join(", ") || "none"}.`,
    inputSchema: startInput(config),
    outputSchema: TaskSummary.extend({ result: z.unknown().optional() }),
  }, (input, ctx) =>
    guarded(async () => {
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
}
