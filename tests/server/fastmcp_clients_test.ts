/**
 * Klym's flows from FastMCP 4.2's client, in its default mode (protocol 2026-07-28) and its legacy
 * mode (2025-11-25), over Streamable HTTP and stdio: start, poll with logs and cancel of a CPU
 * loop; run_task with progress and live log messages; llm_generate and an agent task on the
 * client's sampling_handler (against the grynya stand-in); and fastmcp-tasks 4.1's native flow
 * (create, poll, result, cancel) over HTTP. The server's own per-request debug log shows what went
 * over the wire (a task was created, polled, cancelled).
 */
import assert from "node:assert/strict";
import { FIXTURE_TASKS, MAIN, startKlym } from "../helpers/klym_process.ts";
import { startFastMcpPeer } from "../peers/peers.ts";

const PEERS = new URL("../peers/", import.meta.url).pathname;
const FASTMCP = `${PEERS}.venv-fastmcp/bin/python`;
const FASTMCP_TASKS = `${PEERS}.venv-fastmcp-tasks/bin/python`;
const SCRIPT = `${PEERS}fastmcp_client.py`;

type Json = Record<string, unknown>;
type Mode = "auto" | "legacy";

async function fastmcp(python: string, mode: Mode, target: string, flows: string[]) {
  const { code, stdout, stderr } = await new Deno.Command(python, {
    args: [SCRIPT, mode, target, ...flows],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, `fastmcp_client.py ${mode} ${flows.join(" ")} failed:\n${err}\n${out}`);
  return JSON.parse(out.trim().split("\n").at(-1)!) as Record<string, Json> & {
    sampled: { messages: number; tools: string[] }[];
  };
}

/** A Klym over stdio, as FastMCP's StdioTransport starts it. */
function stdioTarget(env: Record<string, string>): string {
  return JSON.stringify({
    command: Deno.execPath(),
    args: ["run", "-A", "--unstable-worker-options", MAIN, "--stdio"],
    env: {
      KLYM_TASKS_DIR: FIXTURE_TASKS,
      KLYM_STATE: "memory",
      KLYM_LOG_LEVEL: "error",
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "",
      ...env,
    },
  });
}

function assertFlows(seen: Awaited<ReturnType<typeof fastmcp>>, mode: Mode) {
  const tools = seen.tools!;
  assert.equal(tools.running, "running");
  assert.equal(tools.log, "spinning");
  assert.equal(tools.final, "cancelled");

  const run = seen.run as { status: string; log_lines: string[]; progress: number[] };
  assert.equal(run.status, "succeeded");
  // The client runs its progress handler per notification concurrently: any order.
  assert.equal(Math.max(...run.progress), 3, `${mode}: progress ${run.progress}`);
  assert.ok(run.log_lines.includes("step 3: indexed 384 nodes"), `${mode}: ${run.log_lines}`);

  const generated = seen.generate as { text: string; model: string };
  assert.equal(generated.text, "sampled: Capital of France?");
  assert.equal(generated.model, "client-sampling:fastmcp-model");

  const agent = seen.agent as { status: string; result: { answer: string; model: string } };
  assert.equal(agent.status, "succeeded", JSON.stringify(agent));
  assert.equal(agent.result.model, "client-sampling:fastmcp-model");
  // The agent's two model calls went to the sampling handler, the first offering grynya's tools.
  const agentCalls = seen.sampled.filter((s) => s.tools.length > 0);
  assert.equal(agentCalls.length, 2);
  assert.ok(agentCalls[0]!.tools.includes("read_graph"));
  assert.equal(agentCalls[1]!.messages, 3); // question, tool use, tool result
}

for (const mode of ["auto", "legacy"] as const) {
  Deno.test(`FastMCP 4.2 (${mode === "auto" ? "default, 2026-07-28" : "legacy, 2025-11-25"}) runs every flow over Streamable HTTP and stdio`, async (t) => {
    await using graph = await startFastMcpPeer();
    const flows = ["tools", "run", "generate", "agent"];

    await t.step("Streamable HTTP", async () => {
      await using klym = await startKlym({ KLYM_GRYNYA_URL: graph.url });
      assertFlows(await fastmcp(FASTMCP, mode, klym.url, flows), mode);
    });

    await t.step("stdio", async () => {
      const target = stdioTarget({ KLYM_GRYNYA_URL: graph.url });
      assertFlows(await fastmcp(FASTMCP, mode, target, flows), mode);
    });
  });
}

Deno.test("fastmcp-tasks 4.1 creates, polls, reads and cancels Klym tasks over HTTP", async () => {
  await using klym = await startKlym();
  const seen = await fastmcp(FASTMCP_TASKS, "auto", klym.url, ["tasks"]);
  const tasks = seen.tasks as Record<string, string>;
  assert.match(tasks.task_id!, /^t_/);
  assert.equal(tasks.result, "succeeded");
  assert.equal(tasks.spin_working, "working");
  assert.equal(tasks.spin_final, "cancelled");
  assert.equal(tasks.transparent, "succeeded");
  // On the wire, as the server's debug log tells: the CPU loop ended cancelled through tasks/cancel.
  const log = klym.logs.join("\n");
  assert.match(log, new RegExp(`${tasks.spin_task_id}.*cancelled`));
});
