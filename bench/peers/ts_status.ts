/**
 * The status figure through the TypeScript MCP SDK (v2, over Streamable HTTP): `check_task_status`
 * of a finished task for Klym and the seed design (the SDK checks each result against the tool's
 * `outputSchema`, with a validator it compiles once), `tasks/get` through the official tasks
 * package for FastMCP, as a TypeScript assistant would poll each.
 */
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { createTaskSessionFromClient } from "@modelcontextprotocol/ext-tasks/client";

const WARM_UP = 20;

/** Milliseconds per status call, `n` calls after a warm-up. */
export async function tsStatus(url: string, peer: "klym" | "fastmcp" | "seed", n: number) {
  const client = new Client({ name: "klym-peers-bench", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  try {
    const poll = peer === "fastmcp" ? await viaTasks(client) : await viaTool(client);
    const samples: number[] = [];
    for (let i = 0; i < n + WARM_UP; i++) {
      const t0 = performance.now();
      await poll();
      if (i >= WARM_UP) samples.push(performance.now() - t0);
    }
    return samples;
  } finally {
    await client.close();
  }
}

type Poll = () => Promise<unknown>;

async function viaTool(client: Client): Promise<Poll> {
  await client.listTools(); // the output schemas the client checks results against
  const started = await client.callTool({
    name: "start_async_agent_task",
    arguments: { kind: "noop" },
  });
  const taskId = (started.structuredContent as { task_id: string }).task_id;
  const check = () =>
    client.callTool({ name: "check_task_status", arguments: { task_id: taskId } });
  for (let i = 0; i < 1000; i++) {
    const status = (await check()).structuredContent as { status: string };
    if (status.status === "succeeded") return check;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`Task ${taskId} did not succeed`);
}

async function viaTasks(client: Client): Promise<Poll> {
  const tasks = createTaskSessionFromClient(client, { endpointId: "klym-peers-bench" });
  const execution = await tasks.callTool("noop", {}, { task: { preference: "require" } });
  if (execution.kind !== "task") throw new Error("FastMCP ran noop without a task");
  await execution.settle();
  const task = tasks.task(execution.handle.taskId);
  return () => task.snapshot();
}
