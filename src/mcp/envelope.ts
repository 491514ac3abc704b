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

export const LOG_LEVEL_KEY = "io.modelcontextprotocol/logLevel";

/** The levels of `notifications/message`, least severe first. */
export const LOG_LEVELS = [
  "debug",
  "info",
  "notice",
  "warning",
  "error",
  "critical",
  "alert",
  "emergency",
] as const;
export type LogLevel = typeof LOG_LEVELS[number];

/**
 * The log level a 2026-07-28 request opts into (`_meta["io.modelcontextprotocol/logLevel"]`), or
 * `undefined`: without it no `notifications/message` may be sent for the request, and with it only
 * at that level and above, on that request's own response stream.
 */
export function requestLogLevel(
  request: { params?: Record<string, unknown> },
  ctx: ServerContext,
): LogLevel | undefined {
  const envelope: Record<string, unknown> | undefined = ctx.mcpReq.envelope;
  const meta = request.params?._meta as Record<string, unknown> | undefined;
  const found = envelope?.[LOG_LEVEL_KEY] ?? envelope?.logLevel ?? meta?.[LOG_LEVEL_KEY];
  return (LOG_LEVELS as readonly unknown[]).includes(found) ? found as LogLevel : undefined;
}
