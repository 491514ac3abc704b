/**
 * Protocol 2026-07-28 builds one server per request: each must be let go when its answer is sent,
 * or a busy client would leave a registry listener (and a live view) behind per request.
 */
import assert from "node:assert/strict";
import { makeRegistry } from "../helpers/registry.ts";
import { loadConfig } from "../../src/config.ts";
import { HttpApp } from "../../src/http/http_app.ts";
import { createMcpServer } from "../../src/mcp/mcp_server.ts";
import { McpTaskCore } from "../../src/mcp/task_core.ts";
import { MODERN_VERSION, TASKS_EXTENSION } from "../helpers/raw_mcp.ts";

Deno.test("modern requests leave no server behind", async () => {
  const registry = makeRegistry();
  const config = loadConfig({ KLYM_STATE: "memory" }, []);
  const core = new McpTaskCore(registry, { retentionMs: config.retentionS * 1000 });
  const app = new HttpApp({
    config,
    createServer: (owner, era) => createMcpServer({ registry, core, config }, { owner, era }),
    health: () => ({}),
  });
  try {
    const before = registry.events.listenerCount;
    for (let i = 0; i < 40; i++) {
      const method = i % 2 ? "tools/list" : "tools/call";
      const params = i % 2 ? {} : { name: "list_tasks", arguments: {} };
      const res = await app.fetch(
        new Request("http://127.0.0.1:8765/mcp", {
          method: "POST",
          headers: {
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            host: "127.0.0.1:8765",
            "mcp-protocol-version": MODERN_VERSION,
            "mcp-method": method,
            ...(i % 2 ? {} : { "mcp-name": "list_tasks" }),
          },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: i,
            method,
            params: {
              ...params,
              _meta: {
                "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
                "io.modelcontextprotocol/clientCapabilities": {
                  extensions: { [TASKS_EXTENSION]: {} },
                },
              },
            },
          }),
        }),
      );
      assert.equal(res.status, 200, await res.clone().text());
      await res.text();
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(
      registry.events.listenerCount <= before + 1,
      `${registry.events.listenerCount - before} listeners left by 40 requests`,
    );
  } finally {
    await app.close();
    await registry.shutdown();
  }
});
