/**
 * Klym's flows from FastMCP 4.2's client, in its default mode (protocol 2026-07-28) and its legacy
 * mode (2025-11-25), over Streamable HTTP and stdio: start, poll with logs and cancel of a CPU
 * loop; run_task with progress and live log messages; llm_generate and an agent task on the
 * client's sampling_handler (against the grynya stand-in); and fastmcp-tasks 4.1's native flow
 * (create, poll, result, cancel) over HTTP. Over HTTP a recording proxy shows what went over the
 * wire: the task created, polled and cancelled, the messages on each call's stream, and no task
 * process left. One Klym serves every HTTP flow.
 */
import assert from "node:assert/strict";
import { childrenLeft, FIXTURE_TASKS, MAIN, startKlym } from "../helpers/klym_process.ts";
import {
  answeredStatus,
  createdTaskId,
  startWireRecorder,
  type WireExchange,
  type WireRecorder,
} from "../helpers/wire_recorder.ts";
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

/** The recorded tool calls of `name` among `sent`. */
const toolCalls = (sent: WireExchange[], name: string) =>
  sent.filter((e) => e.method === "tools/call" && e.params.name === name);

/** What the HTTP flows put on the wire: the four tools' task, the calls' streams. */
function assertWire(sent: WireExchange[], mode: Mode) {
  // The four tools: a task started, polled with check_task_status, cancelled with cancel_task.
  const [start] = toolCalls(sent, "start_async_agent_task");
  assert.equal(start?.kind, "complete");
  const taskId = (start!.result?.structuredContent as { task_id: string }).task_id;
  const forTask = (name: string) =>
    toolCalls(sent, name).filter((e) => (e.params.arguments as Json).task_id === taskId);
  assert.ok(forTask("check_task_status").length >= 2, "polled before and after the cancel");
  const [cancel] = forTask("cancel_task");
  assert.equal((cancel?.result?.structuredContent as Json).status, "cancelled");

  // run_task answered on its own stream, progress and log lines first.
  const run = toolCalls(sent, "run_task").find((e) =>
    (e.params.arguments as Json).kind === "steps"
  )!;
  assert.equal(run.kind, "complete");
  const methods = run.serverMessages.map((m) => m.method);
  assert.ok(methods.includes("notifications/progress"), `${mode}: ${methods}`);
  assert.ok(methods.includes("notifications/message"), `${mode}: ${methods}`);

  // The agent's model calls: 2026 answers input_required rounds the client retries with the
  // answer; 2025 sends sampling/createMessage on the call's stream.
  const agent = toolCalls(sent, "run_task").filter((e) =>
    (e.params.arguments as Json).kind === "agent"
  );
  assert.equal(agent.at(-1)?.kind, "complete");
  if (mode === "auto") {
    assert.deepEqual(agent.map((e) => e.kind), ["input_required", "input_required", "complete"]);
  } else {
    assert.equal(agent.length, 1);
    const asked = agent[0]!.serverMessages.filter((m) => m.method === "sampling/createMessage");
    assert.equal(asked.length, 2);
  }
}

Deno.test("FastMCP 4.2 and fastmcp-tasks 4.1 run every flow, as the wire shows", async (t) => {
  await using graph = await startFastMcpPeer();
  // No spare processes: the server's children are the running tasks' processes.
  // No spare and no kept host: every task process left after a flow is one that did not end.
  await using klym = await startKlym({
    KLYM_GRYNYA_URL: graph.url,
    KLYM_WARM_SPARES: "0",
    KLYM_IDLE_HOSTS: "0",
  });
  await using wire = await startWireRecorder(klym.url);
  const flows = ["tools", "run", "generate", "agent"];

  for (const mode of ["auto", "legacy"] as const) {
    const era = mode === "auto" ? "default, 2026-07-28" : "legacy, 2025-11-25";
    await t.step(`FastMCP 4.2 (${era}) over Streamable HTTP`, async () => {
      const mark = wire.exchanges.length;
      assertFlows(await fastmcp(FASTMCP, mode, wire.url, flows), mode);
      const sent = wire.exchanges.slice(mark);
      assert.ok(
        sent.every((e) =>
          e.protocolVersion === undefined ||
          e.protocolVersion === (mode === "auto" ? "2026-07-28" : "2025-11-25")
        ),
        "one protocol version",
      );
      assertWire(sent, mode);
      assert.deepEqual(await childrenLeft(klym.pid, 10_000), [], "no task process left");
    });

    await t.step(`FastMCP 4.2 (${era}) over stdio`, async () => {
      const target = stdioTarget({ KLYM_GRYNYA_URL: graph.url });
      assertFlows(await fastmcp(FASTMCP, mode, target, flows), mode);
    });
  }

  await t.step("fastmcp-tasks 4.1 creates, polls, reads and cancels tasks over HTTP", async () => {
    const mark = wire.exchanges.length;
    const seen = await fastmcp(FASTMCP_TASKS, "auto", wire.url, ["tasks"]);
    const tasks = seen.tasks as Record<string, string>;
    assert.match(tasks.task_id!, /^t_/);
    assert.equal(tasks.result, "succeeded");
    assert.equal(tasks.spin_working, "working");
    assert.equal(tasks.spin_final, "cancelled");
    assert.equal(tasks.transparent, "succeeded");
    assertTasksWire(wire, mark, tasks.task_id!, tasks.spin_task_id!);
    assert.deepEqual(await childrenLeft(klym.pid, 10_000), [], "the CPU loop's process is gone");
  });
});

/** fastmcp-tasks' flow on the wire: created as tasks, polled, the CPU loop cancelled. */
function assertTasksWire(wire: WireRecorder, mark: number, doneId: string, spinId: string) {
  const sent = wire.exchanges.slice(mark);
  const created = toolCalls(sent, "run_task").filter((e) => e.kind === "task");
  assert.equal(created.length, 3, "each run_task answered with a CreateTaskResult");
  assert.ok(created.every((e) => e.result?.resultType === "task"));
  assert.deepEqual(created.map(createdTaskId).slice(0, 2), [doneId, spinId]);
  const polls = wire.requests("tasks/get", doneId);
  assert.ok(polls.length >= 1, "tasks/get polled the task");
  assert.equal(answeredStatus(polls.at(-1)!), "completed");
  assert.ok(wire.requests("tasks/get", spinId).some((e) => answeredStatus(e) === "working"));
  const [cancel] = wire.requests("tasks/cancel", spinId);
  // fastmcp-tasks sends tasks/* without Mcp-Name: accepted, the body names the task.
  assert.equal(cancel?.mcpName, undefined);
  assert.equal(cancel?.status, 200);
  assert.equal(cancel?.kind, "complete", JSON.stringify(cancel));
  assert.equal(answeredStatus(wire.requests("tasks/get", spinId).at(-1)!), "cancelled");
  const transparent = createdTaskId(created[2]!)!;
  assert.equal(answeredStatus(wire.requests("tasks/get", transparent).at(-1)!), "completed");
}
