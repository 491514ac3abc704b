/**
 * The server's own log on stderr (stdout belongs to the protocol in stdio mode), with levels and a
 * category per part: human lines on a terminal, JSON lines otherwise (`KLYM_LOG_FORMAT`).
 */
import {
  configure,
  getStreamSink,
  jsonLinesFormatter,
  type LogLevel,
  type LogRecord,
  type Sink,
  type TextFormatter,
} from "@logtape/logtape";
import { chooseLogFormat, type LogFormat, prettyFormatter } from "./log_format.ts";

/**
 * `lowestLevel` comes from the validated config (`KLYM_LOG_LEVEL`), so it is never guessed here.
 * `file`: write JSON lines there instead of stderr (a service started in the background).
 */
export async function setupLogging(
  lowestLevel: LogLevel,
  format?: LogFormat | undefined,
  file?: Deno.FsFile,
): Promise<void> {
  const terminal = !file && Deno.stderr.isTerminal();
  const formatter = chooseLogFormat(format, terminal) === "json"
    ? jsonLinesFormatter
    : prettyFormatter(terminal && !Deno.env.get("NO_COLOR"));
  await configure({
    sinks: {
      // A file is written line by line, at once: a killed service loses nothing it logged.
      stderr: file ? fileSink(file, formatter) : getStreamSink(Deno.stderr.writable, { formatter }),
    },
    loggers: [
      { category: ["klym"], lowestLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

function fileSink(file: Deno.FsFile, formatter: TextFormatter): Sink {
  const encoder = new TextEncoder();
  return (record: LogRecord) => {
    const bytes = encoder.encode(formatter(record));
    for (let written = 0; written < bytes.length;) {
      written += file.writeSync(bytes.subarray(written));
    }
  };
}
