/**
 * Turns a task's output into log lines posted to its host: `console.*` in call order, and bytes
 * written to `Deno.stdout`/`Deno.stderr`, which are replaced so that no task output reaches the
 * process's real stdout (that pipe carries the host's messages) and a partial line never glues onto
 * a message. Lines are cut here for cheap transport; the host enforces the real limit.
 */
import type { LogStream } from "../protocol.ts";
import { truncateUtf8 } from "../text.ts";

/** The largest log line a Worker sends; the host cuts to KLYM_MAX_LOG_LINE_BYTES. */
const WORKER_LINE_BYTES = 1024 * 1024;

const STREAM_OF: Partial<Record<string, LogStream>> = {
  log: "stdout",
  info: "stdout",
  debug: "stdout",
  dir: "stdout",
  table: "stdout",
  warn: "stderr",
  error: "stderr",
  trace: "stderr",
};

export type LineSink = (stream: LogStream, text: string) => void;

function format(args: unknown[]): string {
  return args.map((a) => typeof a === "string" ? a : Deno.inspect(a, { colors: false, depth: 6 }))
    .join(" ");
}

/** Splits written bytes into lines; a line longer than the cap is sent in pieces. */
class LineWriter {
  readonly #decoder = new TextDecoder();
  #pending = "";

  constructor(readonly stream: LogStream, readonly sink: LineSink) {}

  write(bytes: Uint8Array): number {
    const text = this.#pending + this.#decoder.decode(bytes, { stream: true });
    const lines = text.split("\n");
    this.#pending = lines.pop() ?? "";
    for (const line of lines) this.sink(this.stream, truncateUtf8(line, WORKER_LINE_BYTES));
    if (this.#pending.length > WORKER_LINE_BYTES) this.flush();
    return bytes.length;
  }

  flush(): void {
    const rest = this.#pending + this.#decoder.decode();
    this.#pending = "";
    if (rest) this.sink(this.stream, truncateUtf8(rest, WORKER_LINE_BYTES));
  }
}

/**
 * A stand-in for `Deno.stdout`/`Deno.stderr` that turns writes into log lines. Its `writable` is
 * made on first use: the first stream a Worker makes loads the runtime's streams code into its
 * isolate (about 3 ms of CPU), which most tasks never need.
 */
function outputFile(writer: LineWriter) {
  let writable: WritableStream<Uint8Array> | undefined;
  return {
    write: (bytes: Uint8Array) => Promise.resolve(writer.write(bytes)),
    writeSync: (bytes: Uint8Array) => writer.write(bytes),
    get writable(): WritableStream<Uint8Array> {
      return writable ??= new WritableStream<Uint8Array>({
        write: (chunk) => void writer.write(chunk),
      });
    },
    isTerminal: () => false,
    close: () => writer.flush(),
  };
}

/**
 * Every console method, so that none reaches the original console (whose methods write to the real
 * stdout): the usual ones as lines, and counters, timers, assertions and groups done here.
 */
function shimConsole(sink: LineSink): void {
  const target = console as unknown as Record<string, unknown>;
  const counts = new Map<string, number>();
  const timers = new Map<string, number>();
  let indent = "";
  const line = (stream: LogStream, text: string) =>
    sink(stream, truncateUtf8(indent ? text.replace(/^/gm, indent) : text, WORKER_LINE_BYTES));
  const label = (value: unknown) => value === undefined ? "default" : String(value);
  const special: Record<string, (...args: unknown[]) => void> = {
    trace: (...args) =>
      line(
        "stderr",
        `Trace: ${format(args)}\n${new Error().stack?.split("\n").slice(2).join("\n") ?? ""}`,
      ),
    assert: (condition, ...args) => {
      if (!condition) line("stderr", `Assertion failed${args.length ? `: ${format(args)}` : ""}`);
    },
    count: (name) => {
      const n = (counts.get(label(name)) ?? 0) + 1;
      counts.set(label(name), n);
      line("stdout", `${label(name)}: ${n}`);
    },
    countReset: (name) => void counts.delete(label(name)),
    time: (name) => void timers.set(label(name), performance.now()),
    timeLog: (name, ...args) => {
      const since = timers.get(label(name));
      if (since === undefined) return line("stderr", `Timer "${label(name)}" does not exist`);
      line(
        "stdout",
        `${label(name)}: ${(performance.now() - since).toFixed(3)}ms ${format(args)}`.trimEnd(),
      );
    },
    timeEnd: (name) => {
      special.timeLog!(name);
      timers.delete(label(name));
    },
    group: (...args) => {
      if (args.length) line("stdout", format(args));
      indent += "  ";
    },
    groupEnd: () => void (indent = indent.slice(2)),
    clear: () => {},
  };
  special.groupCollapsed = special.group!;
  for (const method of Object.keys(target)) {
    if (typeof target[method] !== "function") continue;
    const stream = STREAM_OF[method] ?? "stdout";
    target[method] = special[method] ?? ((...args: unknown[]) => line(stream, format(args)));
  }
}

/** Captures all task output; returns a function that flushes partial lines (call before the end). */
export function captureOutput(sink: LineSink): () => void {
  shimConsole(sink);
  const stdout = new LineWriter("stdout", sink);
  const stderr = new LineWriter("stderr", sink);
  Object.defineProperty(Deno, "stdout", { value: outputFile(stdout), configurable: false });
  Object.defineProperty(Deno, "stderr", { value: outputFile(stderr), configurable: false });
  return () => {
    stdout.flush();
    stderr.flush();
  };
}
