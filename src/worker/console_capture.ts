/**
 * Turns `console.*` inside a task into log events, in call order, so stdout and stderr lines keep
 * their relative order (two OS pipes would not).
 */
import type { LogStream, TaskEvent } from "../protocol.ts";
import { truncateUtf8 } from "../protocol.ts";

const STREAM_OF: Record<string, LogStream> = {
  log: "stdout",
  info: "stdout",
  debug: "stdout",
  dir: "stdout",
  table: "stdout",
  warn: "stderr",
  error: "stderr",
  trace: "stderr",
};

function format(args: unknown[]): string {
  return args.map((a) => typeof a === "string" ? a : Deno.inspect(a, { colors: false, depth: 6 }))
    .join(" ");
}

export function captureConsole(emit: (event: TaskEvent) => void, maxLineBytes: number): void {
  const target = console as unknown as Record<string, unknown>;
  for (const [method, stream] of Object.entries(STREAM_OF)) {
    target[method] = (...args: unknown[]) => {
      const text = method === "trace"
        ? `Trace: ${format(args)}\n${new Error().stack?.split("\n").slice(2).join("\n") ?? ""}`
        : format(args);
      emit({ type: "log", stream, time: Date.now(), text: truncateUtf8(text, maxLineBytes) });
    };
  }
}
