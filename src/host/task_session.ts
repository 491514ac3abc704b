/**
 * One task inside its host process: the Worker that runs the task's code, and the capabilities the
 * host brokers for it. Every message from the Worker is untrusted: validated, bounded by its type,
 * and a message that breaks the protocol ends the task as `protocol_violation`. grynya and graph
 * writes are made here, with the grynya allowance and token that only this process holds; model
 * calls go on to the server, which holds the keys and the budget. grynya's client (and the MCP SDK
 * under it) is loaded on the task's first grynya call: most tasks never make one.
 *
 * A session ends its task once. Its host is then offered for its principal's next task (`idle`)
 * only after a clean end: the task's own result or failure, reported by the Worker's runtime,
 * with no cancel, no violation, no Worker crash, and a kind that did not ask for a fresh process.
 * Anything else ends the process, as every task's end did before hosts were kept.
 */
import {
  type Failure,
  type GrynyaActivity,
  type GrynyaCall,
  HOST_EXIT_CANCEL_UNANSWERED,
  type HostLimits,
  MAX_SAVE_REPLY_CHARS,
  type TaskSpec,
  type WorkerCommand,
  WorkerEvent,
} from "../protocol.ts";
import { describeIssues } from "../shape.ts";
import { jsonBytes, truncateUtf8, utf8Length } from "../text.ts";
import { KlymError } from "../errors.ts";
import type { GrynyaClient } from "./grynya_client.ts";
import type { GraphWriter } from "./graph_writer.ts";
import type { HostOutput } from "./host_output.ts";
import type { EarlyEvent, PreparedWorker } from "./worker_entry.ts";
import { CancelAck } from "./cancel_ack.ts";

/** grynya's closing may not delay the task's end by more than this. */
const GRYNYA_CLOSE_MS = 1000;

/** What a session tells its host when its task has ended. */
export interface SessionEnd {
  /** Ends the process (`code` 0 by default). */
  readonly exit: (code?: number) => never;
  /**
   * The task ended cleanly and its Worker is terminated: the host may take another task of its
   * principal. Called before the task's last word (followed by `idle`) is written.
   */
  readonly idle: () => void;
  /** The last word and `idle` are written: the host may prepare its next Worker. */
  readonly ready: () => void;
}

/** A size in a message: `jsonBytes` says Infinity for JSON longer than a string can be. */
function sizeOf(bytes: number): string {
  return Number.isFinite(bytes) ? `${bytes} bytes` : "too long to write as JSON";
}

/** grynya's client and the writer of saves, made on the task's first grynya call. */
interface Grynya {
  readonly client: GrynyaClient;
  readonly writer: GraphWriter;
}

export class TaskSession {
  readonly #abort = new AbortController();
  #grynya: Promise<Grynya> | undefined;
  readonly #cancelAck: CancelAck;
  readonly worker: Worker;
  /** What a prepared Worker said before its task (its kind's top-level code), for `start`. */
  readonly #early: EarlyEvent[];
  #running = false;
  #ending = false;
  /** The kind exports `freshProcess = true`: its host takes no other task after it. */
  #freshProcess = false;

  constructor(
    readonly spec: TaskSpec,
    prepared: PreparedWorker,
    readonly out: HostOutput,
    readonly limits: HostLimits,
    readonly host: SessionEnd,
  ) {
    this.#cancelAck = new CancelAck(limits.cancelAckMs, () => void this.#endUnanswered());
    const worker = this.worker = prepared.worker;
    this.#early = [...prepared.take()];
    worker.onmessage = (e: MessageEvent) => this.#onMessage(e.data);
    worker.onmessageerror = () => this.#violation("a message that could not be read");
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      const message = e.message || "The task's Worker failed";
      if (/out of memory|heap limit/i.test(message)) {
        void this.end({ code: "out_of_memory", message });
      } else void this.end({ code: this.#running ? "uncaught_error" : "load_error", message });
    };
  }

  /** grynya's client, loaded and made on first use. */
  #grynyaOf(): Promise<Grynya> {
    return this.#grynya ??= Promise.all([
      import("./grynya_client.ts"),
      import("./graph_writer.ts"),
    ]).then(([{ GrynyaClient }, { GraphWriter }]) => {
      const spec = this.spec;
      const client = new GrynyaClient(
        spec.grynya,
        this.#abort.signal,
        (line) => this.#hostLog("stderr", line),
        (activity) => this.#report(activity),
      );
      const writer = new GraphWriter(client, spec.grynya.write, spec, {
        log: (stream, line) => this.#hostLog(stream, line),
        saved: (record) => {
          if (this.#ending) return;
          this.out.send({
            type: "saved",
            save: {
              seq: record.seq,
              tools: record.tools.slice(0, 8).map((t) => t.slice(0, 128)),
              ok: record.ok,
              time: record.time,
              reply: (record.ok ? record.reply : record.error?.message ?? record.reply)
                .slice(0, MAX_SAVE_REPLY_CHARS),
            },
          });
        },
      });
      return { client, writer };
    });
  }

  /** Hands the Worker its task (without grynya's settings: task code never sees them). */
  start(moduleUrl: string | undefined): void {
    const { grynya: _grynya, modulePath: _modulePath, ...spec } = this.spec;
    this.#post({ type: "start", spec, ...(moduleUrl ? { moduleUrl } : {}) });
    // Before anything the Worker says from now on, in the order it was said.
    for (const event of this.#early.splice(0)) {
      if (event.type === "message") this.#onMessage(event.data);
      else this.#violation("a message that could not be read");
    }
  }

  /**
   * Aborts the task's `ctx.signal` and its host-side calls. A Worker that does not answer within
   * KLYM_CANCEL_ACK_MS is stuck in synchronous code: its process ends at once (`cancel_ack.ts`).
   */
  cancel(reason: string): void {
    this.#abort.abort(new DOMException(reason, "AbortError"));
    if (this.#ending) return;
    this.#post({ type: "cancel", reason, nonce: this.#cancelAck.ask() });
  }

  /** Relays the server's answer to a model call. */
  answer(command: Extract<WorkerCommand, { type: "llm_response" | "llm_error" }>): void {
    this.#post(command);
  }

  /**
   * Reports the task's end once, closes grynya, then offers the host for another task when the end
   * is `clean` (the Worker's runtime reported it) and nothing since taints the process; else ends
   * the process.
   */
  async end(outcome: Failure | { json: string }, clean = false): Promise<void> {
    if (this.#ending) return;
    this.#ending = true;
    this.#cancelAck[Symbol.dispose]();
    this.worker.terminate();
    const cancelled = this.#abort.signal.aborted;
    // No grynya call or reconnect of this task may go on past its end (into a kept host's next
    // task): they all run under this signal.
    this.#abort.abort();
    let closed = true;
    if (this.#grynya) {
      const grynya = this.#grynya.then(({ client }) => client.close()).then(() => true, () => true);
      closed = await Promise.race([
        grynya,
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), GRYNYA_CLOSE_MS)),
      ]);
    }
    // A connection that did not close in time may still carry this task's request: no next task.
    const idle = clean && closed && !cancelled && !this.#freshProcess;
    if (idle) this.host.idle();
    await this.out.finish(
      "json" in outcome
        ? { type: "result", json: outcome.json }
        : { type: "failure", error: outcome },
      idle,
    );
    if (idle) this.host.ready();
    else this.host.exit();
  }

  /**
   * The Worker did not answer its cancel: its loop is stopped and the process ends now, without
   * closing grynya (as the kill after the grace would). Its last lines go out first, within the
   * same bound, then a line saying why the task had no time to clean up.
   */
  async #endUnanswered(): Promise<void> {
    if (this.#ending) return;
    const ms = this.limits.cancelAckMs;
    this.#hostLog(
      "stderr",
      `The task did not answer its cancel within ${ms} ms (KLYM_CANCEL_ACK_MS): its code was stuck in synchronous work, so its process was ended without the grace period`,
    );
    this.#ending = true;
    this.worker.terminate();
    const finished = this.out.finish({
      type: "failure",
      error: { code: "aborted", message: "The task was cancelled while stuck in synchronous code" },
    });
    await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, ms))]);
    this.host.exit(HOST_EXIT_CANCEL_UNANSWERED);
  }

  /** A line of the host's own (grynya's connection, saves) in the task's log. */
  #hostLog(stream: "stdout" | "stderr", line: string): void {
    if (!this.#ending) this.out.log(stream, truncateUtf8(line, this.limits.maxLogLineBytes));
  }

  #post(command: WorkerCommand): void {
    if (!this.#ending) this.worker.postMessage(command);
  }

  #violation(what: string): void {
    void this.end({
      code: "protocol_violation",
      message: `The task broke the protocol with its host: ${what}`,
    });
  }

  #onMessage(data: unknown): void {
    if (this.#ending) return;
    const parsed = WorkerEvent.check(data);
    if (!parsed.success) {
      return this.#violation(truncateUtf8(describeIssues(parsed.issues), 500));
    }
    const event = parsed.data;
    switch (event.type) {
      case "running":
        if (this.#running) return this.#violation("a second running event");
        this.#running = true;
        this.#freshProcess = event.freshProcess === true;
        return this.out.send({ type: "running" });
      case "log":
        return this.out.log(event.stream, truncateUtf8(event.text, this.limits.maxLogLineBytes));
      case "progress":
        return this.out.send(event);
      case "result": {
        const checked = this.#checkResult(event.json);
        return void this.end(
          checked,
          !("code" in checked && checked.code === "protocol_violation"),
        );
      }
      case "failure":
        return void this.end(event.error, true);
      case "llm_request": {
        const bytes = jsonBytes(event.request);
        if (bytes <= this.limits.maxLlmRequestBytes) return this.out.send(event);
        return this.#post({
          type: "llm_error",
          id: event.id,
          error: {
            code: "llm_request_too_large",
            message: `The model request is ${
              sizeOf(bytes)
            }, the limit is ${this.limits.maxLlmRequestBytes} (KLYM_MAX_LLM_REQUEST_BYTES); send less history or shorter tool output`,
          },
        });
      }
      case "llm_cancel":
        return this.out.send(event);
      case "grynya":
        return void this.#brokerGrynya(event.id, event.call);
      case "cancel_ack":
        return this.#cancelAck.answer(event.nonce);
      default: {
        const _exhaustive: never = event;
        return _exhaustive;
      }
    }
  }

  #checkResult(json: string): Failure | { json: string } {
    const bytes = utf8Length(json);
    if (bytes > this.limits.maxResultBytes) {
      return {
        code: "result_too_large",
        message:
          `The result is ${bytes} bytes; the limit is ${this.limits.maxResultBytes} (KLYM_MAX_RESULT_BYTES)`,
      };
    }
    try {
      JSON.parse(json);
    } catch {
      return { code: "protocol_violation", message: "The task's result is not valid JSON" };
    }
    return { json };
  }

  /** grynya's connects and calls, for the operator's metrics and traces. */
  #report(activity: GrynyaActivity): void {
    if (!this.#ending) this.out.send({ type: "grynya", activity });
  }

  async #brokerGrynya(id: number, call: GrynyaCall): Promise<void> {
    const bytes = jsonBytes(call);
    const started = performance.now();
    const done = (outcome: string) =>
      this.#report({ what: "call", op: call.op, outcome, ms: performance.now() - started });
    try {
      if (bytes > this.limits.maxGrynyaCallBytes) {
        throw new KlymError(
          "grynya_request_too_large",
          `The grynya call is ${
            sizeOf(bytes)
          }, the limit is ${this.limits.maxGrynyaCallBytes} (KLYM_MAX_GRYNYA_CALL_BYTES)`,
        );
      }
      const value = await this.#grynyaCall(call);
      const save = call.op === "save" ? value as { ok?: boolean; error?: Failure } : undefined;
      done(save && !save.ok ? save.error?.code ?? "grynya_write_rejected" : "ok");
      this.#post({ type: "grynya_result", id, value });
    } catch (error) {
      const code = error instanceof KlymError ? error.code : "grynya_error";
      done(code);
      const message = error instanceof Error ? error.message : String(error);
      // grynya's errors are built short (under 2 KB); this bounds anything else.
      this.#post({ type: "grynya_error", id, error: { code, message: message.slice(0, 2048) } });
    }
  }

  async #grynyaCall(call: GrynyaCall): Promise<unknown> {
    const { client: grynya, writer } = await this.#grynyaOf();
    switch (call.op) {
      case "connect":
        await grynya.connect();
        return { info: grynya.info, capabilities: grynya.capabilities() ?? {} };
      case "list_tools":
        return await grynya.listTools();
      case "list_resources":
        return await grynya.listResources();
      case "read_resource":
        return await grynya.readResource(call.uri);
      case "list_prompts":
        return await grynya.listPrompts();
      case "get_prompt":
        return await grynya.getPrompt(call.name, call.args);
      case "call_tool":
        return await grynya.callTool(call.name, call.args);
      case "save":
        return await writer.save(call.value);
      case "write_strategy":
        return await writer.strategy();
      default: {
        const _exhaustive: never = call;
        return _exhaustive;
      }
    }
  }
}
