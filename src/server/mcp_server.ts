/** One MCP server per client session, all sharing the task registry. */
import { McpServer } from "@modelcontextprotocol/server";
import type { Config } from "../config.ts";
import type { TaskRegistry } from "../tasks/task_registry.ts";
import { registerTaskTools } from "./task_tools.ts";
import { registerLlmTools } from "./llm_tools.ts";
import { VERSION } from "../version.ts";

export const SERVER_INFO = { name: "klym", version: VERSION } as const;

export function createMcpServer(registry: TaskRegistry, config: Config): McpServer {
  const server = new McpServer(SERVER_INFO, {
    instructions:
      "Klym runs long tasks in the background. start_async_agent_task returns a task_id at once; " +
      "poll check_task_status with it (passing next_log_cursor back) until the status is final; cancel_task stops a task.",
  });
  registerTaskTools(server, registry, config);
  registerLlmTools(server, registry.llm, config.maxPromptBytes);
  return server;
}
