/**
 * The server's own log: structured lines on stderr (stdout belongs to the protocol in stdio mode),
 * with levels and a category per part.
 */
import { configure, getStreamSink, jsonLinesFormatter, type LogLevel } from "@logtape/logtape";

/** `lowestLevel` comes from the validated config (`KLYM_LOG_LEVEL`), so it is never guessed here. */
export async function setupLogging(lowestLevel: LogLevel): Promise<void> {
  await configure({
    sinks: { stderr: getStreamSink(Deno.stderr.writable, { formatter: jsonLinesFormatter }) },
    loggers: [
      { category: ["klym"], lowestLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}
