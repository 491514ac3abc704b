// deno-lint-ignore-file no-console -- the demo speaks to the person who runs it
/**
 * The whole flow in one command (`deno task demo`): a real knowledge-graph MCP server stands in for
 * grynya, Klym serves on a free port, and an MCP client drives it the way an assistant would.
 */
import { Client, SSEClientTransport } from "@modelcontextprotocol/client";
import { startMemoryPeer } from "../tests/peers/peers.ts";
import { call, startKlym, type Status } from "../tests/helpers/klym_process.ts";

const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "interrupted"]);

async function runTask(client: Client, args: Record<string, unknown>): Promise<Status> {
  const started = await call<{ task_id: string; status: string }>(
    client,
    "start_async_agent_task",
    args,
  );
  console.log(`\n→ start_async_agent_task ${JSON.stringify(args)}`);
  console.log(`← ${started.task_id} is ${started.status}`);
  let cursor = 0;
  while (true) {
    const status = await call<Status>(client, "check_task_status", {
      task_id: started.task_id,
      log_cursor: cursor,
    });
    for (const line of status.logs) console.log(`  [${line.stream}] ${line.text}`);
    cursor = status.next_log_cursor;
    if (FINAL.has(status.status)) {
      console.log(`← ${status.status}: ${JSON.stringify(status.result ?? status.error, null, 2)}`);
      return status;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const memoryFile = await Deno.makeTempFile({ prefix: "klym-demo-graph-", suffix: ".jsonl" });
console.log("Starting a knowledge-graph MCP server (server-memory over SSE) as grynya…");
await using grynya = await startMemoryPeer({ transport: "sse", memoryFile });
console.log(`grynya: ${grynya.url}`);
await using klym = await startKlym({ KLYM_GRYNYA_URL: grynya.url });
console.log(`Klym:   ${klym.url}/mcp`);
const client = await klym.connect("http");

const report = await runTask(client, { kind: "report" });
const written = await runTask(client, {
  kind: "graph_write",
  params: { text: "Klym wrote this straight into the graph" },
});

const reader = new Client({ name: "klym-demo", version: "1.0.0" });
await reader.connect(new SSEClientTransport(new URL(grynya.url)));
const graph = await reader.callTool({ name: "read_graph", arguments: {} });
await reader.close();
console.log("\nThe graph now holds:");
console.log(JSON.stringify(graph.structuredContent ?? graph.content, null, 2));

await Deno.remove(memoryFile).catch(() => {});
const ok = report.status === "succeeded" && written.status === "succeeded";
console.log(ok ? "\nDemo finished: all tasks succeeded." : "\nDemo finished with a failure.");
if (!ok) Deno.exitCode = 1;
