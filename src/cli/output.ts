/**
 * The CLI's terminal output: stdout for answers, stderr for messages and the progress bar; colour
 * only on a terminal and without `NO_COLOR`. Text from a server or a task goes through
 * `terminalText` (or `terminalJson`) before it reaches a terminal: one field, one row, always.
 */
import { terminalJson, terminalText } from "./terminal_text.ts";

const encoder = new TextEncoder();

export interface Output {
  readonly color: boolean;
  /** stderr is a terminal: a progress bar may redraw there. */
  readonly live: boolean;
  out(text: string): void;
  err(text: string): void;
  paint(style: Style, text: string): string;
}

export type Style = "bold" | "dim" | "red" | "green" | "yellow" | "blue" | "cyan";

const CODES: Record<Style, string> = {
  bold: "1",
  dim: "2",
  red: "31",
  green: "32",
  yellow: "33",
  blue: "34",
  cyan: "36",
};

function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
}

export function terminalOutput(env: Record<string, string | undefined>): Output {
  const color = Deno.stdout.isTerminal() && !env.NO_COLOR;
  return {
    color,
    live: Deno.stderr.isTerminal(),
    out: (text) => writeAll(Deno.stdout, text),
    err: (text) => writeAll(Deno.stderr, text),
    paint: (style, text) => color ? `\x1b[${CODES[style]}m${text}\x1b[0m` : text,
  };
}

export { terminalJson, terminalText };

const STATUS_STYLE: Record<string, Style> = {
  queued: "yellow",
  running: "blue",
  succeeded: "green",
  failed: "red",
  cancelled: "dim",
  timed_out: "red",
  interrupted: "red",
};

export function paintStatus(output: Output, status: string): string {
  return output.paint(STATUS_STYLE[status] ?? "bold", terminalText(status));
}

/** `[#######-------] 7/14 message`, `width` cells wide. */
export function progressBar(
  progress: { done: number; total?: number | undefined; message?: string | undefined } | undefined,
  width = 24,
): string {
  if (!progress) return `[${"·".repeat(width)}]`;
  // Numbers from the server, made numbers (anything else prints as NaN, never as raw text).
  const done = Number(progress.done);
  const total = progress.total === undefined ? undefined : Number(progress.total);
  const message = progress.message === undefined ? undefined : String(progress.message);
  let bar: string;
  if (total && total > 0) {
    const filled = Math.max(0, Math.min(width, Math.round((done / total) * width)));
    bar = `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total}`;
  } else bar = `[${"~".repeat(width)}] ${done}`;
  return message ? `${bar} ${terminalText(message)}` : bar;
}

/** "42 s", "3 min 5 s", "2 h 4 min". */
export function humanDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** Left-aligned columns, two spaces apart; widths ignore ANSI colour codes. */
export function table(rows: string[][]): string {
  // deno-lint-ignore no-control-regex
  const visible = (cell: string) => cell.replace(/\x1b\[[0-9;]*m/g, "").length;
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, visible(cell)));
  }
  return rows.map((row) =>
    row.map((cell, i) =>
      i === row.length - 1 ? cell : cell + " ".repeat((widths[i] ?? 0) - visible(cell))
    ).join("  ").trimEnd() + "\n"
  ).join("");
}
