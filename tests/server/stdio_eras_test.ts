/**
 * Over stdio, the client's first message picks the protocol era: a 2026-07-28 request
 * (`server/discover`, then the Tasks extension) or a 2025 `initialize` (covered by every test
 * that uses `connectStdio`). Klym ends when its client closes stdin.
 */
import assert from "node:assert/strict";
import { call, connectStdio, FIXTURE_TASKS, MAIN, OWN_SESSION } from "../helpers/klym_process.ts";
import { MODERN_VERSION, TASKS_EXTENSION } from "../helpers/raw_mcp.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";

const META = {
  "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
  "io.modelcontextprotocol/clientCapabilities": { extensions: { [TASKS_EXTENSION]: {} } },
  "io.modelcontextprotocol/clientInfo": { name: "klym-stdio-test", version: "1.0.0" },
};

Deno.test("stdio serves protocol 2026-07-28: server/discover and the Tasks extension", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", MAIN, "--stdio"],
    env: { KLYM_STATE: "memory", KLYM_TASKS_DIR: FIXTURE_TASKS, KLYM_LOG_LEVEL: "error" },
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
    ...OWN_SESSION,
  }).spawn();
  const writer = child.stdin.getWriter();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let next = 1;
  const request = async (method: string, params: Record<string, unknown> = {}) => {
    const id = next++;
    const line = JSON.stringify({ jsonrpc: "2.0", id, method, params: { ...params, _meta: META } });
    await writer.write(new TextEncoder().encode(line + "\n"));
    for (;;) {
      const at = buffered.indexOf("\n");
      if (at !== -1) {
        const message = JSON.parse(buffered.slice(0, at));
        buffered = buffered.slice(at + 1);
        if (message.id === id) return message;
        continue;
      }
      const { value, done } = await lines.read();
      if (done) throw new Error(`stdout ended before the answer to ${method}`);
      buffered += value;
    }
  };
  try {
    const discovered = await request("server/discover");
    assert.ok(discovered.result.supportedVersions.includes(MODERN_VERSION));
    assert.deepEqual(discovered.result.capabilities.extensions[TASKS_EXTENSION], {});
    const listed = await request("tools/call", { name: "list_tasks", arguments: {} });
    assert.equal(listed.error, undefined);
    assert.deepEqual(listed.result.structuredContent.tasks, []);
    const created = await request("tools/call", { name: "run_task", arguments: { kind: "hello" } });
    assert.equal(created.result.resultType, "task");
    const deadline = Date.now() + PATIENCE_MS;
    let task;
    do {
      task = (await request("tasks/get", { taskId: created.result.taskId })).result;
    } while (task.status === "working" && Date.now() < deadline);
    assert.equal(task.status, "completed");
    assert.equal(task.result.structuredContent.status, "succeeded");
  } finally {
    await writer.close();
    await lines.cancel();
  }
  // Its client gone, Klym ends by itself.
  const status = await child.status;
  assert.equal(status.code, 0);
});

Deno.test("stdio still serves a 2025 session", async () => {
  const client = await connectStdio();
  try {
    assert.equal(client.getServerVersion()?.name, "klym");
    const listed = await call<{ tasks: unknown[] }>(client, "list_tasks", {});
    assert.deepEqual(listed.tasks, []);
  } finally {
    await client.close();
  }
});
