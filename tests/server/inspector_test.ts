/**
 * A native task flow from MCP Inspector (npm `@modelcontextprotocol/inspector`, installed with the
 * Node it needs by tests/peers/setup.ts), in both protocol eras. The Inspector's one-shot CLI
 * (`--cli`) has no task-augmented call and no `tasks/*` methods, so this drives its connection CLI,
 * `mcpdo` (shipped in the same package): connect once, then `tools/call --task`, `tasks/get`,
 * `tasks/result` and `tasks/cancel` against the connection, each a process of its own.
 */
import assert from "node:assert/strict";
import { PEERS_DIR } from "../peers/setup.ts";
import { OWN_SESSION, startKlym } from "../helpers/klym_process.ts";

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

for (const era of ["legacy", "modern"] as const) {
  Deno.test(`MCP Inspector (${era} era) runs run_task as a task, reads and cancels tasks`, async () => {
    await using klym = await startKlym();
    const home = await Deno.makeTempDir({ prefix: "klym-inspector-" });
    const env = await privateDaemon(home);
    const run = (...args: string[]) => mcpdo(home, env, "--connection", "klym", ...args);
    try {
      await mcpdo(
        home,
        env,
        "connect",
        "--server-url",
        `${klym.url}/mcp`,
        "--transport",
        "http",
        "--era",
        era,
        "--connection",
        "klym",
      );

      // Started as a task (2025: task-augmented; 2026: the Tasks extension), polled to its result.
      const done = await run("tools/call", "--task", "run_task", 'kind:="hello"', 'prompt:="hi"');
      const summary = done.structuredContent as { task_id: string; status: string; result: Json };
      assert.equal(summary.status, "succeeded");
      assert.deepEqual(summary.result, { taskId: summary.task_id, prompt: "hi", params: {} });
      if (era === "legacy") {
        // The result came through tasks/result, which names its task.
        const meta = done._meta as Record<string, { taskId: string }> | undefined;
        assert.equal(meta?.["io.modelcontextprotocol/related-task"]?.taskId, summary.task_id);
        const again = await run("tasks/result", summary.task_id);
        assert.equal((again.structuredContent as Json).status, "succeeded");
      }
      const finished = await run("tasks/get", summary.task_id);
      const task = (finished.task ?? finished) as Json;
      assert.equal(task.status, "completed");

      // Another, long task: seen working through tasks/get, then cancelled through tasks/cancel.
      const started = await run(
        "tools/call",
        "start_async_agent_task",
        'kind:="sleep"',
        'params:={"ms":60000}',
      );
      const id = (started.structuredContent as { task_id: string }).task_id;
      const working = await run("tasks/get", id);
      assert.equal(((working.task ?? working) as Json).status, "working");
      await run("tasks/cancel", id);
      const status = await run("tools/call", "check_task_status", `task_id:="${id}"`);
      assert.equal((status.structuredContent as Json).status, "cancelled");
    } finally {
      await mcpdo(home, env, "daemon", "stop").catch(() => undefined);
      await Deno.remove(home, { recursive: true }).catch(() => undefined);
    }
  });
}
