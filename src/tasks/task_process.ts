/**
 * One task's child process, seen from the main isolate: spawn it with scoped permissions, read its
 * events and raw output, ask it to stop, and kill it when it does not.
 */
import { fileURLToPath as fromFileUrl } from "node:url";
import { setPriority } from "node:os";
import { resolve } from "node:path";
import { getLogger } from "@logtape/logtape";
import {
  HostCommand,
  type HostHello,
  TaskEvent,
  type TaskSpec,
  truncateUtf8,
} from "../protocol.ts";
import { readLines } from "../lines.ts";
import { netAllowance } from "../worker/host.ts";

const logger = getLogger(["klym", "process"]);

/** Lower CPU priority for task processes keeps the server's own latency flat under load. */
const TASK_NICENESS = 19;
/** Extra room on top of the result limit for a message line's envelope. */
const LINE_SLACK_BYTES = 64 * 1024;

export interface ProcessOptions {
  grynyaUrl: string;
  tasksDir?: string | undefined;
  taskMemoryMb: number;
  maxLogLineBytes: number;
  maxResultBytes: number;
}

export interface ProcessExit {
  code: number;
  signal: Deno.Signal | null;
  /** The last lines the process wrote to stderr outside any task log (crash reports). */
  stderrTail: string;
}

export type EventSink = (event: TaskEvent) => void;

/** The command that starts a host process, under `deno run` or inside a compiled binary. */
export function hostCommand(options: ProcessOptions): { command: string; args: string[] } {
  const v8 = `--v8-flags=--max-old-space-size=${options.taskMemoryMb}`;
  if (Deno.build.standalone) {
    // Runtime flags cannot be passed to a compiled binary: it re-invokes itself, and the host
    // scopes the Worker's permissions instead.
    return { command: Deno.execPath(), args: ["--task-host"] };
  }
  const srcDir = fromFileUrl(new URL("../", import.meta.url));
  const read = [srcDir, ...(options.tasksDir ? [options.tasksDir] : [])];
  return {
    command: Deno.execPath(),
    args: [
      "run",
      "--quiet",
      "--no-prompt",
      `--config=${fromFileUrl(new URL("../../deno.json", import.meta.url))}`,
      "--unstable-worker-options",
      `--allow-read=${read.join(",")}`,
      `--allow-net=${netAllowance(options.grynyaUrl)}`,
      v8,
      fromFileUrl(new URL("../worker/host.ts", import.meta.url)),
    ],
  };
}

/** Only what Deno itself needs to find its cache; never the server's secrets. */
function childEnv(options: ProcessOptions): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME", "PATH", "SYSTEMROOT", "LOCALAPPDATA"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  if (Deno.build.standalone) env.DENO_V8_FLAGS = `--max-old-space-size=${options.taskMemoryMb}`;
  return env;
}

export class TaskProcess {
  readonly #child: Deno.ChildProcess;
  readonly #channel = `\u001e${crypto.randomUUID()}\u001e`;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #encoder = new TextEncoder();
  readonly #stderrTail: string[] = [];
  #sink: EventSink | undefined;
  #buffered: TaskEvent[] = [];
  #killed = false;
  readonly exited: Promise<ProcessExit>;

  constructor(readonly options: ProcessOptions) {
    const { command, args } = hostCommand(options);
    this.#child = new Deno.Command(command, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      clearEnv: true,
      env: childEnv(options),
    }).spawn();
    try {
      setPriority(this.#child.pid, TASK_NICENESS);
    } catch {
      // Not permitted on every platform; the task then runs at normal priority.
    }
    this.#stdin = this.#child.stdin.getWriter();
    void this.#write(
      {
        channel: this.#channel,
        grynyaUrl: options.grynyaUrl,
        ...(options.tasksDir ? { tasksDir: resolve(options.tasksDir) } : {}),
      } satisfies HostHello,
    );
    const stdout = this.#pumpStdout();
    const stderr = this.#pumpStderr();
    this.exited = this.#child.status.then(async (status) => {
      await Promise.allSettled([stdout, stderr]);
      return {
        code: status.code,
        signal: status.signal,
        stderrTail: this.#stderrTail.join("\n"),
      };
    });
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Hands the process its task; events start flowing to `sink`. */
  start(spec: TaskSpec, sink: EventSink): void {
    this.#sink = sink;
    for (const event of this.#buffered) sink(event);
    this.#buffered = [];
    void this.#write({ type: "start", spec } satisfies HostCommand);
  }

  /** Sends a command (e.g. a model's answer) to the task. */
  send(command: HostCommand): void {
    void this.#write(command);
  }

  /** Cooperative stop through the task's `ctx.signal`, then SIGKILL after `graceMs`. */
  async stop(reason: string, graceMs: number): Promise<ProcessExit> {
    void this.#write({ type: "cancel", reason } satisfies HostCommand);
    const timer = setTimeout(() => this.kill(), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (this.#killed) return;
    this.#killed = true;
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }

  async #write(message: unknown): Promise<void> {
    try {
      await this.#stdin.write(this.#encoder.encode(JSON.stringify(message) + "\n"));
    } catch {
      // The process has exited; its exit is reported through `exited`.
    }
  }

  #emit(event: TaskEvent): void {
    if (this.#sink) this.#sink(event);
    else this.#buffered.push(event);
  }

  async #pumpStdout(): Promise<void> {
    const maxLine = this.options.maxResultBytes + LINE_SLACK_BYTES;
    for await (const { line, truncated } of readLines(this.#child.stdout, maxLine)) {
      if (!line.startsWith(this.#channel)) {
        this.#rawLog("stdout", line);
        continue;
      }
      if (truncated) {
        this.#emit({
          type: "failure",
          error: {
            code: "result_too_large",
            message: `A message from the task exceeded ${maxLine} bytes (KLYM_MAX_RESULT_BYTES)`,
          },
        });
        continue;
      }
      const parsed = TaskEvent.safeParse(parseJson(line.slice(this.#channel.length)));
      if (!parsed.success) {
        logger.warn("Malformed event from task process {pid}: {error}", {
          pid: this.pid,
          error: parsed.error.message,
        });
        continue;
      }
      this.#emit(parsed.data);
    }
  }

  async #pumpStderr(): Promise<void> {
    for await (const { line } of readLines(this.#child.stderr, this.options.maxLogLineBytes)) {
      this.#stderrTail.push(line);
      if (this.#stderrTail.length > 20) this.#stderrTail.shift();
      this.#rawLog("stderr", line);
    }
  }

  /** Output written around `console` (e.g. `Deno.stdout.write`, runtime crash reports) is kept too. */
  #rawLog(stream: "stdout" | "stderr", line: string): void {
    if (!this.#sink) {
      if (line.trim()) {
        logger.debug("Idle task process {pid} wrote: {line}", { pid: this.pid, line });
      }
      return;
    }
    this.#emit({
      type: "log",
      stream,
      time: Date.now(),
      text: truncateUtf8(line, this.options.maxLogLineBytes),
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill();
    await this.exited;
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
