/**
 * Pins src/mcp/sdk_seam.ts, the one file that reaches into the MCP SDK's private state, against
 * the SDK version deno.json pins: a bump or a change of the private handler map fails here, by
 * name, rather than somewhere in the task eras.
 */
import assert from "node:assert/strict";
import { InMemoryTransport, McpServer } from "@modelcontextprotocol/server";
import { Client } from "@modelcontextprotocol/client";
import { z } from "zod";
import { type RawRequest, SDK_SEAM_VERSION, wrapRequestHandler } from "../../src/mcp/sdk_seam.ts";

const SERVER_PACKAGE = "@modelcontextprotocol/server";

function serverWithTool(): McpServer {
  const server = new McpServer({ name: "seam", version: "0" }, { capabilities: { logging: {} } });
  server.registerTool("echo", {
    inputSchema: z.object({ text: z.string() }),
  }, ({ text }) => ({ content: [{ type: "text", text: `echo ${text}` }] }));
  return server;
}

async function connected(server: McpServer): Promise<Client & AsyncDisposable> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: "seam-test", version: "0" });
  await client.connect(clientSide);
  return Object.assign(client, {
    [Symbol.asyncDispose]: async () => {
      await client.close();
      await server.close();
    },
  });
}

Deno.test("deno.json pins the SDK version the seam was checked against", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  ) as { imports: Record<string, string> };
  assert.equal(
    config.imports[SERVER_PACKAGE],
    `npm:${SERVER_PACKAGE}@${SDK_SEAM_VERSION}`,
    `deno.json pins another ${SERVER_PACKAGE} than src/mcp/sdk_seam.ts was checked on ` +
      `(${SDK_SEAM_VERSION}): re-check its private handler map in the new SDK, then update SDK_SEAM_VERSION`,
  );
});

Deno.test("a wrapped handler sees the raw request and its context, and passes others through", async () => {
  const server = serverWithTool();
  const seen: { request: RawRequest; id: unknown; signal: unknown }[] = [];
  wrapRequestHandler(server, "tools/call", (original) => async (request, ctx) => {
    seen.push({ request, id: ctx.mcpReq.id, signal: ctx.mcpReq.signal });
    if (request.params?.name === "shortcut") {
      return { content: [{ type: "text", text: "answered by the wrapper" }] };
    }
    return await original(request, ctx);
  });
  await using client = await connected(server);

  const passed = await client.callTool({ name: "echo", arguments: { text: "hi" } });
  assert.deepEqual(passed.content, [{ type: "text", text: "echo hi" }]);
  const shortcut = await client.callTool({ name: "shortcut", arguments: {} });
  assert.deepEqual(shortcut.content, [{ type: "text", text: "answered by the wrapper" }]);

  assert.equal(seen.length, 2);
  const [first] = seen;
  assert.equal(first!.request.method, "tools/call");
  assert.deepEqual(first!.request.params?.arguments, { text: "hi" });
  assert.ok(typeof first!.id === "number" || typeof first!.id === "string");
  assert.ok(first!.signal instanceof AbortSignal);
});

Deno.test("the original handler still validates what the wrapper passes on", async () => {
  const server = serverWithTool();
  wrapRequestHandler(server, "tools/call", (original) => (request, ctx) => original(request, ctx));
  await using client = await connected(server);
  const refused = await client.callTool({ name: "echo", arguments: { text: 42 } });
  assert.equal(refused.isError, true, "the SDK's own input validation must run behind the wrapper");
});

Deno.test("wrapping a method with no handler is refused naming the method", () => {
  const server = serverWithTool();
  assert.throws(
    () => wrapRequestHandler(server, "tasks/get", (original) => original),
    /Cannot wrap the tasks\/get handler: the MCP SDK has none registered yet/,
  );
});

Deno.test("an SDK without the private handler map fails loudly, naming the seam file", () => {
  const server = serverWithTool();
  // What a future SDK that renamed or hid its handler map looks like to the seam.
  Object.defineProperty(server.server, "_requestHandlers", { value: undefined });
  assert.throws(
    () => wrapRequestHandler(server, "tools/call", (original) => original),
    /no longer keeps its request handlers in Protocol\._requestHandlers \(checked on 2\.4\.0\); update src\/mcp\/sdk_seam\.ts/,
  );
});
