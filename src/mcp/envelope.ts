/** What a 2026-07-28 request says of its client in its `_meta` envelope. */
import type { ServerContext } from "@modelcontextprotocol/server";

export const CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities";

/** The client capabilities a 2026-07-28 request declares in its `_meta` envelope. */
export function requestCapabilities(
  request: { params?: Record<string, unknown> },
  ctx: ServerContext,
): Record<string, unknown> {
  const envelope: Record<string, unknown> | undefined = ctx.mcpReq.envelope;
  const fromEnvelope = envelope?.clientCapabilities ?? envelope?.[CLIENT_CAPABILITIES_KEY];
  const meta = request.params?._meta as Record<string, unknown> | undefined;
  const found = fromEnvelope ?? meta?.[CLIENT_CAPABILITIES_KEY];
  return found && typeof found === "object" ? found as Record<string, unknown> : {};
}
