/**
 * The one place Klym reaches into the MCP SDK's private state. The SDK's typed surface has no room
 * for a task-augmented `tools/call` answer (a `CreateTaskResult` in 2025-11-25, a flat
 * `resultType: "task"` in 2026-07-28) nor for a hook after its own `logging/setLevel` handler, so
 * Klym puts a wrapper in front of the handler the SDK stored, which passes every other call through
 * untouched. The stored handlers live in the protocol's private `_requestHandlers` map (keyed by
 * method, each taking the raw JSON-RPC request and the handler context).
 *
 * `SDK_SEAM_VERSION` names the SDK version this was checked against; tests/mcp/sdk_seam_test.ts
 * fails when deno.json pins another one, or when the private shape is not what this file expects.
 */
import type { McpServer, ServerContext } from "@modelcontextprotocol/server";

/** The `@modelcontextprotocol/server` version whose private handler map this file was checked on. */
export const SDK_SEAM_VERSION = "2.4.0";

/** A request as a stored handler receives it: the JSON-RPC request, not yet validated. */
export interface RawRequest {
  readonly method: string;
  readonly params?: Record<string, unknown>;
}

/** A stored handler: answers the raw request (a result object) or throws a `ProtocolError`. */
export type RawHandler = (request: RawRequest, ctx: ServerContext) => Promise<unknown>;

/** The private part of the SDK's `Protocol` this file relies on. */
interface ProtocolPrivates {
  readonly _requestHandlers: Map<string, RawHandler>;
}

/** The SDK's stored handlers of `server`, or an error saying what changed in the SDK. */
function storedHandlers(server: McpServer): Map<string, RawHandler> {
  const handlers = (server.server as unknown as Partial<ProtocolPrivates>)._requestHandlers;
  if (!(handlers instanceof Map)) {
    throw new Error(
      `The MCP SDK no longer keeps its request handlers in Protocol._requestHandlers (checked on ${SDK_SEAM_VERSION}); update src/mcp/sdk_seam.ts`,
    );
  }
  return handlers;
}

/**
 * Replaces the stored handler of `method` on `server` with `wrap(original)`. Throws when `method`
 * has no handler yet (register the SDK's own first: `registerTool`, `setRequestHandler`).
 */
export function wrapRequestHandler(
  server: McpServer,
  method: string,
  wrap: (original: RawHandler) => RawHandler,
): void {
  const handlers = storedHandlers(server);
  const original = handlers.get(method);
  if (!original) {
    throw new Error(`Cannot wrap the ${method} handler: the MCP SDK has none registered yet`);
  }
  handlers.set(method, wrap(original));
}
