/**
 * How Klym's own log looks: one human line per event (`pretty`, coloured on a terminal) or JSON
 * lines (`json`). Values that come from outside (task ids, kinds, messages) may hold control
 * characters; the pretty format escapes them so nothing can drive the terminal.
 */
import type { LogLevel, LogRecord } from "@logtape/logtape";

export type LogFormat = "pretty" | "json";

/** The format to use: the configured one, else pretty on a terminal and JSON anywhere else. */
export function chooseLogFormat(configured: LogFormat | undefined, isTerminal: boolean): LogFormat {
  return configured ?? (isTerminal ? "pretty" : "json");
}

const RESET = "\x1b[0m";
const DIM = "\x1b[2m";
const BOLD = "\x1b[1m";
const LEVEL_STYLE: Record<LogLevel, string> = {
  trace: "\x1b[2m",
  debug: "\x1b[36m",
  info: "\x1b[32m",
  warning: "\x1b[33m",
  error: "\x1b[31m",
  fatal: "\x1b[1;31m",
};
const LEVEL_LABEL: Record<LogLevel, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO ",
  warning: "WARN ",
  error: "ERROR",
  fatal: "FATAL",
};

// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** Escapes control characters (ANSI sequences included) so a value prints as inert text. */
export function inert(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

function show(value: unknown): string {
  if (typeof value === "string") return inert(value);
  if (value instanceof Error) return inert(`${value.name}: ${value.message}`);
  return inert(Deno.inspect(value, { colors: false, compact: true, breakLength: Infinity }));
}

/** A formatter for LogTape's stream sink; `color` adds ANSI colours. */
export function prettyFormatter(color: boolean): (record: LogRecord) => string {
  const paint = (style: string, text: string) => color ? `${style}${text}${RESET}` : text;
  return (record) => {
    const time = new Date(record.timestamp).toISOString().slice(11, 23);
    const banner = record.properties.banner;
    const message = record.message.map((part, i) => i % 2 ? show(part) : String(part)).join("");
    const category = record.category.slice(1).join(".");
    let line = `${paint(DIM, time)} ${
      paint(LEVEL_STYLE[record.level], LEVEL_LABEL[record.level])
    } ${category ? paint(DIM, `${category} `) : ""}${message}\n`;
    if (Array.isArray(banner)) {
      const rows = banner.filter((row): row is [string, unknown] =>
        Array.isArray(row) && typeof row[0] === "string"
      );
      const width = Math.max(0, ...rows.map(([label]) => label.length));
      line += rows.map(([label, value]) =>
        `  ${paint(BOLD, label.padEnd(width))}  ${show(value)}\n`
      ).join("");
    }
    return line;
  };
}
