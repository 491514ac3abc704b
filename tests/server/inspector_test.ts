/**
 * A native task flow from MCP Inspector (npm `@modelcontextprotocol/inspector`, installed with the
 * Node it needs by tests/peers/setup.ts), in both protocol eras, through a recording proxy that
 * shows what went over the wire. The Inspector's one-shot CLI (`--cli`) has no task-augmented call
 * and no `tasks/*` methods, so this drives its connection CLI, `mcpdo` (shipped in the same
 * package): connect once, then `tools/call --task`, which creates the task and polls it, and
 * `tasks/cancel`, each a process of its own. The daemon runs one command at a time per connection,
 * so the cancel goes through a second connection while the first still polls.
 */
import assert from "node:assert/strict";
import { PEERS_DIR } from "../peers/setup.ts";
import {
  childPids,
  childrenLeft,
  OWN_SESSION,
  startKlym,
  type Status,
  waitLogged,
} from "../helpers/klym_process.ts";
import {
  answeredStatus,
  createdTaskId,
  startWireRecorder,
  type WireExchange,
} from "../helpers/wire_recorder.ts";

const NODE = `${PEERS_DIR}npm/node_modules/node/bin/node`;
const MCPDO =
  `${PEERS_DIR}npm/node_modules/@modelcontextprotocol/inspector/clients/mcpdo/build/mcp-bin.js`;

type Json = Record<string, unknown>;

/** Runs `mcpdo` with a private daemon under `home`; its JSON output, or a thrown error. */
async function mcpdo(home: string, env: Record<string, string>, ...args: string[]): Promise<Json> {
  const { code, stdout, stderr } = await new Deno.Command(NODE, {
    args: [MCPDO, "--format", "json", ...args],
    env: { HOME: home, MCP_INSPECTOR_SECRET_STORE: "memory", ...env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
    ...OWN_SESSION,
  }).output();
  const out = new TextDecoder().decode(stdout);
  if (code !== 0) {
    throw new Error(
      `mcpdo ${args.join(" ")} exited ${code}: ${out}${new TextDecoder().decode(stderr)}`,
    );
  }
  return JSON.parse(out);
}

/** A private, token-gated daemon (its exports from `mcpdo private`), so tests do not share one. */
async function privateDaemon(home: string): Promise<Record<string, string>> {
  const { stdout } = await new Deno.Command(NODE, {
    args: [MCPDO, "private"],
    env: { HOME: home },
    stdout: "piped",
    stderr: "null",
  }).output();
  const env: Record<string, string> = {};
  for (
    const [, key, value] of new TextDecoder().decode(stdout).matchAll(/export (\w+)='([^']*)'/g)
  ) {
    env[key!] = value!;
  }
  assert.ok(env.MCP_INSPECTOR_DAEMON_DIR, "mcpdo private named a daemon folder");
  return env;
}

Deno.test("MCP Inspector runs run_task as a task, polls it and cancels another, in both eras, as the wire shows", async (t) => {
  // No spare processes: the server's children are the running tasks' processes.
  await using klym = await startKlym({ KLYM_WARM_SPARES: "0" });
  await using wire = await startWireRecorder(klym.url);
  const observer = await klym.connect();

  for (const era of ["legacy", "modern"] as const) {
    await t.step(`${era} era`, async () => {
      const home = await Deno.makeTempDir({ prefix: "klym-inspector-" });
      const env = await privateDaemon(home);
      const connect = (name: string) =>
        mcpdo(
          home,
          env,
          "connect",
          "--server-url",
          `${wire.url}/mcp`,
          "--transport",
          "http",
          "--era",
          era,
          "--connection",
          name,
        );
      const run = (...args: string[]) => mcpdo(home, env, "--connection", "klym", ...args);
      const mark = wire.exchanges.length;
      const sent = (test: (e: WireExchange) => boolean) => wire.exchanges.slice(mark).filter(test);
      const runTaskCall = (kind: string) => (e: WireExchange) =>
        e.method === "tools/call" && e.params.name === "run_task" &&
        (e.params.arguments as { kind?: string }).kind === kind && e.kind !== undefined;
      let spinner: Deno.ChildProcess | undefined;
      try {
        await connect("klym");

        // Started as a task: the call was answered with a CreateTaskResult, then polled.
        const done = await run("tools/call", "--task", "run_task", 'kind:="hello"', 'prompt:="hi"');
        const summary = done.structuredContent as { task_id: string; status: string; result: Json };
        assert.equal(summary.status, "succeeded");
        assert.deepEqual(summary.result, { taskId: summary.task_id, prompt: "hi", params: {} });
        const [call] = sent(runTaskCall("hello"));
        assert.equal(call?.kind, "task", `run_task was answered at once: ${JSON.stringify(call)}`);
        assert.equal(createdTaskId(call!), summary.task_id);
        if (era === "legacy") assert.ok("task" in call!.params, "a task-augmented tools/call");
        else assert.equal(call!.result?.resultType, "task");
        const polls = wire.requests("tasks/get", summary.task_id);
        assert.ok(polls.length >= 1, "the client polled with tasks/get");
        assert.equal(answeredStatus(polls.at(-1)!), "completed");
        if (era === "legacy") {
          // The result came through tasks/result, which names its task.
          assert.equal(wire.requests("tasks/result", summary.task_id)[0]?.kind, "complete");
          const meta = done._meta as Record<string, { taskId: string }> | undefined;
          assert.equal(meta?.["io.modelcontextprotocol/related-task"]?.taskId, summary.task_id);
        } else {
          // 2026-07-28 has no tasks/result: the last tasks/get carried the result inline.
          assert.equal((polls.at(-1)!.result?.result as Json | undefined)?.resultType, "complete");
        }

        // A CPU loop, started the same way: created, seen working through tasks/get, cancelled.
        spinner = new Deno.Command(NODE, {
          args: [
            MCPDO,
            "--format",
            "json",
            "--connection",
            "klym",
            "tools/call",
            "--task",
            "run_task",
            'kind:="spin"',
          ],
          env: { HOME: home, MCP_INSPECTOR_SECRET_STORE: "memory", ...env },
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(60_000),
        }).spawn();
        const created = await wire.waitFor((e) =>
          runTaskCall("spin")(e) && sent(() => true).includes(e)
        );
        assert.equal(
          created.kind,
          "task",
          `run_task was answered at once: ${JSON.stringify(created)}`,
        );
        const id = createdTaskId(created)!;
        await waitLogged(observer, id, /spinning/);
        const processes = childPids(klym.pid);
        assert.ok(processes.length > 0, "the CPU loop runs in a process of its own");
        await wire.waitFor((e) =>
          e.method === "tasks/get" && e.params.taskId === id && answeredStatus(e) === "working"
        );

        await connect("canceller");
        await mcpdo(home, env, "--connection", "canceller", "tasks/cancel", id);
        const [cancel] = wire.requests("tasks/cancel", id);
        assert.equal(cancel?.kind, "complete", JSON.stringify(cancel));
        if (era === "legacy") assert.equal(answeredStatus(cancel!), "cancelled");
        else assert.equal(cancel!.result?.resultType, "complete");
        // The polling call learns of it and stops.
        const ended = await spinner.output();
        spinner = undefined;
        assert.notEqual(ended.code, 0);
        const refusal = JSON.parse(new TextDecoder().decode(ended.stderr));
        assert.equal(refusal.error?.message, 'Tool call "run_task" was cancelled.');
        const status =
          (await observer.callTool({ name: "check_task_status", arguments: { task_id: id } }))
            .structuredContent as unknown as Status;
        assert.equal(status.status, "cancelled");
        assert.deepEqual(
          await childrenLeft(klym.pid, 10_000, processes),
          [],
          "the task's process is gone",
        );
      } finally {
        spinner?.kill();
        await spinner?.output();
        await mcpdo(home, env, "daemon", "stop").catch(() => undefined);
        await Deno.remove(home, { recursive: true }).catch(() => undefined);
      }
    });
  }
});
