/**
 * The server's own log: structured lines on stderr (stdout belongs to the protocol in stdio mode),
 * with levels and a category per part.
 */
import { configure, getStreamSink, jsonLinesFormatter, type LogLevel } from "@logtape/logtape";

const LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];

export async function setupLogging(level: string | undefined): Promise<void> {
  const lowestLevel = (LEVELS as readonly string[]).includes(level ?? "")
    ? level as LogLevel
    : "info";
  await configure({
    sinks: { stderr: getStreamSink(Deno.stderr.writable, { formatter: jsonLinesFormatter }) },
    loggers: [
      { category: ["klym"], lowestLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}
