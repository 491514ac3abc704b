/**
 * A grynya stand-in that counts task runs: a small MCP server (Streamable HTTP, stateless) in the
 * test's own process, with grynya's `create_entities` tool. Each run of the `counted` fixture
 * creates one entity named `start <task id> <random>`; `starts()` says how many runs each task had.
 * Unlike a memory server that rewrites its file on every call, no concurrent call is lost.
 */
import { McpServer, WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/server";
import { z } from "zod";

export interface StartCounter extends AsyncDisposable {
  /** Its MCP endpoint (`http://127.0.0.1:PORT/mcp`), for KLYM_GRYNYA_URL. */
  readonly url: string;
  /** Runs seen so far, per task id. */
  starts(): Map<string, number>;
  stop(): Promise<void>;
}

const Entity = z.object({
  name: z.string(),
  entityType: z.string(),
  observations: z.array(z.string()),
});

export function startCounter(): StartCounter {
  const runs = new Map<string, number>();
  const server = () => {
    const mcp = new McpServer({ name: "start-counter", version: "1.0.0" });
    mcp.registerTool("create_entities", {
      inputSchema: z.object({ entities: z.array(Entity) }),
    }, ({ entities }) => {
      for (const { name } of entities) {
        const id = /^start (\S+) /.exec(name)?.[1];
        if (id) runs.set(id, (runs.get(id) ?? 0) + 1);
      }
      return { content: [{ type: "text", text: JSON.stringify(entities) }] };
    });
    return mcp;
  };
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    if (new URL(req.url).pathname !== "/mcp") return new Response("Not found", { status: 404 });
    // Stateless: a server and a transport per request, nothing kept between them.
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    const mcp = server();
    await mcp.connect(transport);
    try {
      return await transport.handleRequest(req);
    } finally {
      await mcp.close();
    }
  });
  const stop = () => http.shutdown();
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    starts: () => new Map(runs),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
