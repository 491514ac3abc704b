/**
 * One task inside its host process: the Worker that runs the task's code, and the capabilities the
 * host brokers for it. Every message from the Worker is untrusted: validated, bounded by its type,
 * and a message that breaks the protocol ends the task as `protocol_violation`. grynya and graph
 * writes are made here, with the grynya allowance and token that only this process holds; model
 * calls go on to the server, which holds the keys and the budget.
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
import { truncateUtf8, utf8Length } from "../text.ts";
import { KlymError } from "../errors.ts";
import type { GrynyaClient } from "./grynya_client.ts";
import type { GraphWriter } from "./graph_writer.ts";
import type { HostOutput } from "./host_output.ts";
import { CancelAck } from "./cancel_ack.ts";

/** grynya's closing may not delay the task's end by more than this. */
const GRYNYA_CLOSE_MS = 1000;

export class TaskSession {
  readonly #abort = new AbortController();
  /**
   * grynya's client and the graph writer, loaded on the task's first grynya call: a task that
   * never calls grynya never loads the MCP client (about 9 MB of its process).
   */
  #grynya: Promise<{ client: GrynyaClient; writer: GraphWriter }> | undefined;
  readonly #cancelAck: CancelAck;
  #running = false;
  #ending = false;

  constructor(
    readonly spec: TaskSpec,
    readonly worker: Worker,
    readonly out: HostOutput,
    readonly limits: HostLimits,
    readonly exit: (code?: number) => never,
  ) {
    this.#cancelAck = new CancelAck(limits.cancelAckMs, () => void this.#endUnanswered());
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

  /** Hands the Worker its task (without grynya's settings: task code never sees them). */
  start(moduleUrl: string | undefined): void {
    const { grynya: _grynya, modulePath: _modulePath, ...spec } = this.spec;
    this.#post({ type: "start", spec, ...(moduleUrl ? { moduleUrl } : {}) });
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

  /** Reports the task's end once, closes grynya, and ends the process. */
  async end(outcome: Failure | { json: string }): Promise<void> {
    if (this.#ending) return;
    this.#ending = true;
    this.#cancelAck[Symbol.dispose]();
    this.worker.terminate();
    await Promise.race([
      this.#grynya?.then(({ client }) => client.close()),
      new Promise((resolve) => setTimeout(resolve, GRYNYA_CLOSE_MS)),
    ]);
    await this.out.finish(
      "json" in outcome
        ? { type: "result", json: outcome.json }
        : { type: "failure", error: outcome },
    );
    this.exit();
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
    this.exit(HOST_EXIT_CANCEL_UNANSWERED);
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
    const parsed = WorkerEvent.safeParse(data);
    if (!parsed.success) {
      return this.#violation(truncateUtf8(parsed.error.message.replace(/\s+/g, " "), 500));
    }
    const event = parsed.data;
    switch (event.type) {
      case "running":
        if (this.#running) return this.#violation("a second running event");
        this.#running = true;
        return this.out.send(event);
      case "log":
        return this.out.log(event.stream, truncateUtf8(event.text, this.limits.maxLogLineBytes));
      case "progress":
        return this.out.send(event);
      case "result":
        return void this.end(this.#checkResult(event.json));
      case "failure":
        return void this.end(event.error);
      case "llm_request": {
        const bytes = utf8Length(JSON.stringify(event.request));
        if (bytes <= this.limits.maxLlmRequestBytes) return this.out.send(event);
        return this.#post({
          type: "llm_error",
          id: event.id,
          error: {
            code: "llm_request_too_large",
            message:
              `The model request is ${bytes} bytes, the limit is ${this.limits.maxLlmRequestBytes} (KLYM_MAX_LLM_REQUEST_BYTES); send less history or shorter tool output`,
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
    const bytes = utf8Length(JSON.stringify(call));
    const started = performance.now();
    const done = (outcome: string) =>
      this.#report({ what: "call", op: call.op, outcome, ms: performance.now() - started });
    try {
      if (bytes > this.limits.maxGrynyaCallBytes) {
        throw new KlymError(
          "grynya_request_too_large",
          `The grynya call is ${bytes} bytes, the limit is ${this.limits.maxGrynyaCallBytes} (KLYM_MAX_GRYNYA_CALL_BYTES)`,
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

  #grynyaParts(): Promise<{ client: GrynyaClient; writer: GraphWriter }> {
    return this.#grynya ??= (async () => {
      const [{ GrynyaClient }, { GraphWriter }] = await Promise.all([
        import("./grynya_client.ts"),
        import("./graph_writer.ts"),
      ]);
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
    })();
  }

  async #grynyaCall(call: GrynyaCall): Promise<unknown> {
    const { client: grynya, writer } = await this.#grynyaParts();
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
