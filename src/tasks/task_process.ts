/**
 * A task's own process, seen from the server: it spawns the host, hands it its task, and reads its
 * output. Reading is bounded work per event-loop turn whatever the output's shape (bare newlines,
 * one endless line, many short lines, invalid UTF-8), so no task can starve the server. Every
 * message is validated and bounded by its type; one that breaks the protocol becomes a
 * `protocol_violation` failure. Times are the server's, stamped by the registry on receipt.
 * What the process may reach (permissions, modules, environment, memory) is `sandbox_policy.ts`.
 *
 * A process runs one task at a time. When its host says `idle` after a task's last word, the task's
 * turn ends with the process alive and `reusable` tells whether it may take its principal's next
 * task (`process_pool.ts`): never once it wrote anything outside the protocol (a runtime's crash
 * report, a warning), broke the protocol, raised its memory alarm, or was told to stop.
 */
import { getLogger } from "@logtape/logtape";
import {
  HostCommand,
  HostEvent,
  type HostHello,
  type HostLimits,
  type TaskSpec,
} from "../protocol.ts";
import { readLines } from "../lines.ts";
import { describeIssues } from "../shape.ts";
import { truncateUtf8, utf8Length } from "../text.ts";
import { MEMORY_ALARM } from "../memory_alarm.ts";
import { watchProcessMemory } from "./memory_sampler.ts";
import { type CpuTime, openCpuTime } from "./cpu_time.ts";
import { ClientPaths } from "./client_paths.ts";
import {
  lowerPriority,
  restorePriority,
  sandboxedCommand,
  type SandboxOptions,
} from "./sandbox_policy.ts";
import type { Config } from "../config.ts";

const logger = getLogger(["klym", "process"]);

/** Room on top of the largest message body for its envelope. */
const ENVELOPE_BYTES = 64 * 1024;
/** Output read from one pipe before the reader lets the server's other work run. */
const TURN_BYTES = 16 * 1024;
/** What one line costs against `TURN_BYTES` beyond its text, so that empty lines count too. */
const LINE_COST = 64;
/** Lines of the host's own stderr kept to explain how its process ended. */
const STDERR_TAIL_LINES = 20;

/** A task process's sandbox and the limits its host holds its task to. */
export interface ProcessOptions extends HostLimits, SandboxOptions {}

/** The process options a configuration asks for. */
export function processOptions(
  config: Pick<
    Config,
    | "grynyaUrl"
    | "taskMemoryMb"
    | "logLimitBytes"
    | "maxLogLineBytes"
    | "maxResultBytes"
    | "maxLlmRequestBytes"
    | "maxGrynyaCallBytes"
    | "cancelAckMs"
  >,
  kindsDir: string | undefined,
): ProcessOptions {
  return {
    grynyaUrl: config.grynyaUrl,
    kindsDir,
    memoryMb: config.taskMemoryMb,
    logLimitBytes: config.logLimitBytes,
    maxLogLineBytes: config.maxLogLineBytes,
    maxResultBytes: config.maxResultBytes,
    maxLlmRequestBytes: config.maxLlmRequestBytes,
    maxGrynyaCallBytes: config.maxGrynyaCallBytes,
    cancelAckMs: config.cancelAckMs,
  };
}

export interface ProcessExit {
  code: number;
  signal: Deno.Signal | null;
  /** The last lines the process wrote to stderr (crash reports). */
  stderrTail: string;
}

/** A validated event of a task, or raw output the process wrote outside the protocol. */
export type ProcessEvent =
  | Exclude<HostEvent, { type: "idle" }>
  | { type: "raw"; stream: "stdout" | "stderr"; text: string };

/** How a task's turn in its process ended: its host went idle, or the process exited. */
export type TurnEnd =
  | { readonly type: "idle" }
  | { readonly type: "exited"; readonly exit: ProcessExit };

export type EventSink = (event: ProcessEvent) => void;

/** Lets timers, I/O and other requests run before more output is read. */
const nextTurn = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export class TaskProcess {
  readonly #child: Deno.ChildProcess;
  readonly #channel = `\u001e${crypto.randomUUID()}\u001e`;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #encoder = new TextEncoder();
  readonly #stderrTail: string[] = [];
  readonly #maxMessageBytes: number;
  readonly #paths: ClientPaths;
  #sink: EventSink | undefined;
  #killed = false;
  /** Told to stop, or seen doing something that rules out another task (see the file's note). */
  #tainted = false;
  /** The running task's turn, from `start` to its host's `idle` or the process's exit. */
  #turn: PromiseWithResolvers<TurnEnd> | undefined;
  /** Opened at its spawn, so that a process that took its pid later is never read. */
  readonly #cpu: CpuTime | undefined;
  readonly exited: Promise<ProcessExit>;

  /** Spawns the host; throws the OS error when the process cannot be started. */
  constructor(readonly options: ProcessOptions) {
    const { command, ...sandbox } = sandboxedCommand(options);
    this.#paths = new ClientPaths(options.kindsDir);
    this.#maxMessageBytes = Math.max(options.maxResultBytes, options.maxLlmRequestBytes) +
      ENVELOPE_BYTES;
    this.#child = new Deno.Command(command, {
      ...sandbox,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    lowerPriority(this.#child.pid);
    this.#stdin = this.#child.stdin.getWriter();
    const { grynyaUrl: _url, kindsDir: _dir, ...limits } = options;
    const memory = watchProcessMemory(
      this.pid,
      limits.memoryMb * 1048576,
      (rss) => this.#outOfMemory(rss),
    );
    this.#cpu = openCpuTime(this.pid);
    void this.#write({ channel: this.#channel, limits, watchdog: !memory } satisfies HostHello);
    const stdout = this.#pump("stdout", this.#child.stdout);
    const stderr = this.#pump("stderr", this.#child.stderr);
    this.exited = this.#child.status.then(async (status) => {
      memory?.[Symbol.dispose]();
      this.#cpu?.close();
      await Promise.allSettled([stdout, stderr]);
      return { code: status.code, signal: status.signal, stderrTail: this.#stderrTail.join("\n") };
    });
    void this.exited.then(() => this.#tainted = true);
  }

  /** Whether it may take another task: alive, idle, and never tainted (see the file's note). */
  get reusable(): boolean {
    return !this.#tainted && !this.#killed && this.#sink === undefined;
  }

  get pid(): number {
    return this.#child.pid;
  }

  /**
   * Milliseconds of CPU (user + system) it has used so far; `undefined` where the server cannot
   * read it (no /proc) or once it has ended.
   */
  cpuMs(): number | undefined {
    return this.#cpu?.readMs();
  }

  /**
   * Hands the process its task; events start flowing to `sink`. Resolves when the task's turn
   * ends: its host idle (the task reported its end first) or the process gone.
   */
  start(spec: TaskSpec, sink: EventSink): Promise<TurnEnd> {
    this.#sink = sink;
    const turn = this.#turn = Promise.withResolvers<TurnEnd>();
    // A process that exited already (or exits before its task ends) ends the turn with its exit.
    void this.exited.then((exit) => turn.resolve({ type: "exited", exit }));
    void this.#write({ type: "start", spec } satisfies HostCommand);
    return turn.promise;
  }

  /** Sends a command (e.g. a model's answer) to the task's host. */
  send(command: HostCommand): void {
    void this.#write(command);
  }

  /**
   * Cooperative stop through the task's `ctx.signal`, then SIGKILL after `graceMs`. The host ends
   * the process itself, at once, when the task's Worker does not answer the cancel within
   * KLYM_CANCEL_ACK_MS (`src/host/cancel_ack.ts`): a CPU loop keeps no core for the grace.
   */
  async stop(reason: string, graceMs: number): Promise<ProcessExit> {
    this.#tainted = true;
    // A process that ends itself (its Worker did not answer in time) must not wait for the CPU at
    // nice 19 to do it; a cooperative one runs at normal priority for its grace at most.
    restorePriority(this.#child.pid);
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
    this.#tainted = true;
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
      return;
    }
    restorePriority(this.#child.pid);
  }

  async #write(message: unknown): Promise<void> {
    try {
      await this.#stdin.write(this.#encoder.encode(JSON.stringify(message) + "\n"));
    } catch {
      // The process has exited; its exit is reported through `exited`.
    }
  }

  async #pump(stream: "stdout" | "stderr", pipe: ReadableStream<Uint8Array>): Promise<void> {
    const maxLine = stream === "stdout" ? this.#maxMessageBytes : this.options.maxLogLineBytes;
    let budget = TURN_BYTES;
    for await (const { line, truncated } of readLines(pipe, maxLine)) {
      if (stream === "stdout") this.#onStdout(line, truncated);
      else this.#onStderr(line);
      budget -= line.length + LINE_COST;
      if (budget <= 0) {
        budget = TURN_BYTES;
        await nextTurn();
      }
    }
  }

  #onStderr(line: string): void {
    const alarm = line.indexOf(`${this.#channel}${MEMORY_ALARM}`);
    if (alarm !== -1) {
      return this.#outOfMemory(
        Number(line.slice(alarm + this.#channel.length + MEMORY_ALARM.length)),
      );
    }
    this.#tainted = true;
    this.#stderrTail.push(truncateUtf8(this.#paths.text(line), 1024));
    if (this.#stderrTail.length > STDERR_TAIL_LINES) this.#stderrTail.shift();
    this.#raw("stderr", line);
  }

  #onStdout(line: string, truncated: boolean): void {
    const at = line.indexOf(this.#channel);
    if (at === -1) {
      this.#tainted = true;
      return this.#raw("stdout", line);
    }
    if (at > 0) this.#tainted = true;
    // Output without a final newline, written outside the protocol, ends where a message begins.
    if (at > 0) this.#raw("stdout", line.slice(0, at));
    if (truncated) {
      return this.#violation(`a message longer than ${this.#maxMessageBytes} bytes`);
    }
    let data: unknown;
    try {
      data = JSON.parse(line.slice(at + this.#channel.length));
    } catch {
      return this.#violation("a message that is not JSON");
    }
    const parsed = HostEvent.check(data);
    if (!parsed.success) {
      return this.#violation(truncateUtf8(describeIssues(parsed.issues), 500));
    }
    const problem = this.#oversize(parsed.data);
    if (problem) return this.#violation(problem);
    if (parsed.data.type === "idle") return this.#idle();
    this.#emit(parsed.data);
  }

  /** The host took its task's last word and waits for another: the task's turn ends. */
  #idle(): void {
    const turn = this.#turn;
    if (!this.#sink || !turn) {
      logger.warn("Task process {pid} said idle without a task: it is ended", { pid: this.pid });
      return this.kill();
    }
    this.#sink = undefined;
    this.#turn = undefined;
    turn.resolve({ type: "idle" });
  }

  /** Each message type has its own limit, whatever the host let through. */
  #oversize(event: HostEvent): string | undefined {
    const { maxLogLineBytes, maxResultBytes, maxLlmRequestBytes } = this.options;
    switch (event.type) {
      case "logs":
        return event.lines.some(([, text]) => utf8Length(text) > maxLogLineBytes + 64)
          ? `a log line over ${maxLogLineBytes} bytes (KLYM_MAX_LOG_LINE_BYTES)`
          : undefined;
      case "result":
        return utf8Length(event.json) > maxResultBytes
          ? `a result over ${maxResultBytes} bytes (KLYM_MAX_RESULT_BYTES)`
          : undefined;
      case "llm_request":
        return utf8Length(JSON.stringify(event.request)) > maxLlmRequestBytes
          ? `a model request over ${maxLlmRequestBytes} bytes (KLYM_MAX_LLM_REQUEST_BYTES)`
          : undefined;
      default:
        return undefined;
    }
  }

  /** The process is over its cap (server's sampler or host's watchdog): it ends now. */
  #outOfMemory(rss: number): void {
    this.#tainted = true;
    this.#emit({
      type: "failure",
      error: {
        code: "out_of_memory",
        message: `The task's process used ${
          Math.round(rss / 1048576)
        } MB, more than ${this.options.memoryMb} MB (KLYM_TASK_MEMORY_MB), and was ended`,
      },
    });
    this.kill();
  }

  #violation(what: string): void {
    this.#tainted = true;
    logger.warn("Task process {pid} broke the protocol: {what}", { pid: this.pid, what });
    this.#emit({
      type: "failure",
      error: { code: "protocol_violation", message: `The task's process sent ${what}` },
    });
  }

  #emit(event: ProcessEvent): void {
    if (this.#sink) this.#sink(this.#relative(event));
    else if (event.type !== "raw") {
      logger.warn("Idle task process {pid} sent {type} before its task", {
        pid: this.pid,
        type: event.type,
      });
    }
  }

  /** Paths of the server's machine become relative ones before anything reaches a client. */
  #relative(event: ProcessEvent): ProcessEvent {
    switch (event.type) {
      case "failure":
        return {
          ...event,
          error: { ...event.error, message: this.#paths.failure(event.error.message) },
        };
      case "raw":
        return { ...event, text: this.#paths.text(event.text) };
      case "logs":
        return {
          ...event,
          lines: event.lines.map(([stream, text]) => [stream, this.#paths.text(text)]),
        };
      default:
        return event;
    }
  }

  /** Output written outside the protocol (runtime crash reports) is kept as log lines. */
  #raw(stream: "stdout" | "stderr", line: string): void {
    if (!this.#sink) {
      if (line.trim()) {
        logger.debug("Idle task process {pid} wrote: {line}", { pid: this.pid, line });
      }
      return;
    }
    this.#emit({ type: "raw", stream, text: truncateUtf8(line, this.options.maxLogLineBytes) });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill();
    await this.exited;
  }
}
