/**
 * Klym's Prometheus metrics (docs/metrics.md lists them): counters and histograms fed as tasks
 * move (a `TaskObserver`), gauges read when scraped. The text format is prom-client's. Labels that
 * come from outside (principal, model, kind) are bounded by `LabelValues`.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { type GrynyaActivity, GrynyaCall } from "../protocol.ts";
import { ERROR_CODES } from "../errors.ts";
import type { ModelCall, TaskObserver } from "../tasks/task_observer.ts";
import type { TaskRecord } from "../tasks/task_store.ts";
import type { TaskStatus } from "../tasks/task_state.ts";
import type { ProcessExit } from "../tasks/task_process.ts";
import type { JournalHealth } from "../journal/journal.ts";
import { LabelValues } from "./label_values.ts";

/** Seconds, from a few milliseconds (a warm start) to an hour (a long task). */
const SECONDS_BUCKETS = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
  3600,
];

/** grynya's operations and Klym's error codes: a host that sends anything else counts as `other`. */
const GRYNYA_OPS: ReadonlySet<string> = new Set(GrynyaCall.values);
const known = (set: ReadonlySet<string>, value: string | undefined) =>
  value !== undefined && set.has(value) ? value : "other";
const CODES: ReadonlySet<string> = new Set(Object.keys(ERROR_CODES));

/** What the gauges read when scraped. */
export interface MetricSources {
  /** Process ids of the tasks running now. */
  readonly runningPids: () => readonly number[];
  /** Task processes alive (running tasks and those still winding down). */
  readonly processCount: () => number;
  /** Resident bytes of a process; `undefined` where unknown (not Linux, gone). */
  readonly residentBytes: (pid: number) => number | undefined;
  readonly spares: () => number;
  readonly journal: () => JournalHealth;
  /** Open MCP sessions, by era and transport. */
  readonly sessions: () => readonly { era: string; transport: string; count: number }[];
}

export interface KlymMetricsOptions {
  readonly maxLabelValues: number;
  readonly version: string;
  /** This node's id when the store is shared by several nodes (`klym_node_info`). */
  readonly node?: string | undefined;
  readonly sources: MetricSources;
}

export class KlymMetrics implements TaskObserver {
  readonly registry = new Registry();
  readonly #principals: LabelValues;
  readonly #models: LabelValues;
  readonly #kinds: LabelValues;
  /** When a cancelled or timed-out task's stop was asked, until its process is gone. */
  readonly #stopping = new Map<string, number>();
  /** Tasks whose first log line has not come yet. */
  readonly #noLineYet = new Set<string>();
  /** Where each unfinished task is counted: its gauge and label (a launch can fail before it runs). */
  readonly #counted = new Map<string, { gauge: "queued" | "running"; principal: string }>();

  readonly #started;
  readonly #finished;
  readonly #queued;
  readonly #running;
  readonly #startToRunning;
  readonly #startToFirstLine;
  readonly #duration;
  readonly #cancels;
  readonly #stopSeconds;
  readonly #logLines;
  readonly #logBytes;
  readonly #logDropped;
  readonly #grynyaConnects;
  readonly #grynyaReconnects;
  readonly #grynyaCalls;
  readonly #grynyaFailures;
  readonly #grynyaSeconds;
  readonly #modelCalls;
  readonly #modelInput;
  readonly #modelOutput;
  readonly #modelRefusals;

  constructor(options: KlymMetricsOptions) {
    const { sources } = options;
    this.#principals = new LabelValues(options.maxLabelValues);
    this.#models = new LabelValues(options.maxLabelValues);
    this.#kinds = new LabelValues(options.maxLabelValues);
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new Counter<L>({ name, help, labelNames, registers });
    const gauge = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new Gauge<L>({ name, help, labelNames, registers });
    const histogram = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new Histogram<L>({ name, help, labelNames, buckets: SECONDS_BUCKETS, registers });

    new Gauge({
      name: "klym_build_info",
      help: "Klym's version (always 1)",
      labelNames: ["version"],
      registers,
    }).set({ version: options.version }, 1);
    // The node as an info metric (joined in queries by `instance`), not a label on every series.
    const node = new Gauge({
      name: "klym_node_info",
      help: "This node's id in a shared store (always 1; no series on one machine)",
      labelNames: ["node"],
      registers,
    });
    if (options.node !== undefined) node.set({ node: options.node }, 1);
    this.#started = counter("klym_tasks_started_total", "Tasks admitted", ["principal", "kind"]);
    this.#finished = counter("klym_tasks_finished_total", "Tasks that reached a final status", [
      "principal",
      "kind",
      "status",
    ]);
    this.#queued = gauge("klym_tasks_queued", "Tasks waiting for a slot", ["principal"]);
    this.#running = gauge("klym_tasks_running", "Tasks running", ["principal"]);
    this.#startToRunning = histogram(
      "klym_task_start_to_running_seconds",
      "From admission to the task's own code running (queue, process, module load)",
      ["kind"],
    );
    this.#startToFirstLine = histogram(
      "klym_task_start_to_first_line_seconds",
      "From admission to the task's first log line",
      ["kind"],
    );
    this.#duration = histogram(
      "klym_task_duration_seconds",
      "From admission to the final status",
      ["kind", "status"],
    );
    this.#cancels = counter(
      "klym_task_cancels_total",
      "Tasks ended by cancel, deadline or shutdown, by why",
      ["reason"],
    );
    this.#stopSeconds = histogram(
      "klym_task_stop_seconds",
      "From a cancel or deadline to the task's process being gone",
      ["reason"],
    );
    new Gauge({
      name: "klym_task_processes",
      help:
        "Task processes alive (running tasks, those winding down and those kept idle for their principal)",
      registers,
      collect() {
        this.set(sources.processCount());
      },
    });
    new Gauge({
      name: "klym_task_processes_resident_memory_bytes",
      help: "Resident memory of the task processes running or kept idle, all together (Linux)",
      registers,
      collect() {
        let bytes = 0;
        for (const pid of sources.runningPids()) bytes += sources.residentBytes(pid) ?? 0;
        this.set(bytes);
      },
    });
    new Gauge({
      name: "klym_warm_spares",
      help: "Task processes started ahead of need, waiting for a task",
      registers,
      collect() {
        this.set(sources.spares());
      },
    });
    this.#logLines = counter("klym_log_lines_received_total", "Task log lines received", []);
    this.#logBytes = counter("klym_log_bytes_received_total", "Task log bytes received", []);
    this.#logDropped = counter(
      "klym_log_lines_dropped_total",
      "Task log lines a task's host dropped because the server read too slowly",
      [],
    );
    new Counter({
      name: "klym_journal_write_failures_total",
      help: "Journal writes that failed (each loses what it held)",
      registers,
      collect() {
        this.reset();
        this.inc(sources.journal().failedWrites ?? 0);
      },
    });
    new Gauge({
      name: "klym_journal_up",
      help: "1 while the journal's writes succeed, 0 once one failed",
      registers,
      collect() {
        this.set(sources.journal().ok ? 1 : 0);
      },
    });
    new Gauge({
      name: "klym_journal_write_lag_seconds",
      help: "Age of the oldest record waiting in the journal's batch (0 when none waits)",
      registers,
      collect() {
        const since = sources.journal().pendingSince;
        this.set(since === undefined ? 0 : Math.max(0, (Date.now() - since) / 1000));
      },
    });
    this.#grynyaConnects = counter(
      "klym_grynya_connects_total",
      "Task connections to grynya, by outcome",
      ["outcome"],
    );
    this.#grynyaReconnects = counter(
      "klym_grynya_reconnects_total",
      "Reconnections to grynya after a dropped connection, by outcome",
      ["outcome"],
    );
    this.#grynyaCalls = counter("klym_grynya_calls_total", "grynya calls by tasks, by operation", [
      "op",
    ]);
    this.#grynyaFailures = counter(
      "klym_grynya_call_failures_total",
      "grynya calls that failed, by operation and error code",
      ["op", "code"],
    );
    this.#grynyaSeconds = histogram(
      "klym_grynya_call_duration_seconds",
      "How long grynya calls took, by operation",
      ["op"],
    );
    this.#modelCalls = counter(
      "klym_model_calls_total",
      "Model calls (tasks and llm_generate), by outcome",
      [
        "principal",
        "model",
        "outcome",
      ],
    );
    this.#modelInput = counter("klym_model_input_tokens_total", "Model input tokens", [
      "principal",
      "model",
    ]);
    this.#modelOutput = counter("klym_model_output_tokens_total", "Model output tokens", [
      "principal",
      "model",
    ]);
    this.#modelRefusals = counter(
      "klym_model_refusals_total",
      "Model calls Klym refused (budget, concurrency), by code",
      ["principal", "model", "code"],
    );
    new Gauge({
      name: "klym_sessions_open",
      help: "Open MCP sessions, by protocol era and transport",
      labelNames: ["era", "transport"],
      registers,
      collect() {
        this.reset();
        for (const { era, transport, count } of sources.sessions()) {
          this.set({ era, transport }, count);
        }
      },
    });
  }

  /** The text format, and its content type. */
  async text(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }

  /** The bounded label value of a principal (the spend ledger uses the same bound). */
  principal(name: string): string {
    return this.#principals.of(name);
  }

  model(name: string): string {
    return this.#models.of(name);
  }

  admitted(task: TaskRecord): void {
    const principal = this.#principals.of(task.owner);
    this.#started.inc({ principal, kind: this.#kinds.of(task.kind) });
    this.#queued.inc({ principal });
    this.#counted.set(task.id, { gauge: "queued", principal });
    this.#noLineYet.add(task.id);
  }

  launched(task: TaskRecord): void {
    const counted = this.#counted.get(task.id);
    if (counted?.gauge !== "queued") return;
    this.#queued.dec({ principal: counted.principal });
    this.#running.inc({ principal: counted.principal });
    this.#counted.set(task.id, { gauge: "running", principal: counted.principal });
  }

  codeStarted(task: TaskRecord): void {
    if (task.codeStartedAt === undefined) return;
    this.#startToRunning.observe(
      { kind: this.#kinds.of(task.kind) },
      (task.codeStartedAt - task.createdAt) / 1000,
    );
  }

  logged(task: TaskRecord, lines: number, bytes: number, dropped: number): void {
    this.#logLines.inc(lines);
    this.#logBytes.inc(bytes);
    if (dropped > 0) this.#logDropped.inc(dropped);
    if (lines > 0 && this.#noLineYet.delete(task.id)) {
      this.#startToFirstLine.observe(
        { kind: this.#kinds.of(task.kind) },
        (Date.now() - task.createdAt) / 1000,
      );
    }
  }

  settled(task: TaskRecord, from: TaskStatus): void {
    const principal = this.#principals.of(task.owner);
    const kind = this.#kinds.of(task.kind);
    const state = task.state;
    const status = state.status;
    this.#noLineYet.delete(task.id);
    const counted = this.#counted.get(task.id);
    this.#counted.delete(task.id);
    if (counted) {
      (counted.gauge === "queued" ? this.#queued : this.#running).dec({
        principal: counted.principal,
      });
    }
    this.#finished.inc({ principal, kind, status });
    if ("finishedAt" in state) {
      this.#duration.observe({ kind, status }, (state.finishedAt - task.createdAt) / 1000);
    }
    if (status === "cancelled" || status === "timed_out") {
      const reason = status === "timed_out"
        ? "timed_out"
        : "error" in state && state.error.code === "shutdown"
        ? "shutdown"
        : "cancelled";
      this.#cancels.inc({ reason });
      if (from === "running") this.#stopping.set(task.id, Date.now());
    }
  }

  exited(task: TaskRecord, _exit: ProcessExit): void {
    const since = this.#stopping.get(task.id);
    if (since === undefined) return;
    this.#stopping.delete(task.id);
    const state = task.state;
    const reason = state.status === "timed_out"
      ? "timed_out"
      : "error" in state && state.error.code === "shutdown"
      ? "shutdown"
      : "cancelled";
    this.#stopSeconds.observe({ reason }, (Date.now() - since) / 1000);
  }

  modelCall(task: TaskRecord, call: ModelCall): void {
    this.modelCallBy(task.owner, call);
  }

  /** A model call of `owner`'s, in a task or not (`llm_generate`). */
  modelCallBy(owner: string, call: ModelCall): void {
    const labels = {
      principal: this.#principals.of(owner),
      model: this.#models.of(call.model),
    };
    this.#modelCalls.inc({ ...labels, outcome: call.outcome });
    if (call.inputTokens > 0) this.#modelInput.inc(labels, call.inputTokens);
    if (call.outputTokens > 0) this.#modelOutput.inc(labels, call.outputTokens);
    if (call.outcome === "refused") {
      this.#modelRefusals.inc({ ...labels, code: known(CODES, call.code) });
    }
  }

  grynya(_task: TaskRecord, activity: GrynyaActivity): void {
    const outcome = activity.outcome === "ok" ? "ok" : "failed";
    switch (activity.what) {
      case "connect":
        return this.#grynyaConnects.inc({ outcome });
      case "reconnect":
        return this.#grynyaReconnects.inc({ outcome });
      case "call": {
        // The ops are the protocol's (GrynyaCall), the codes Klym's: both are bounded sets.
        const op = known(GRYNYA_OPS, activity.op);
        this.#grynyaCalls.inc({ op });
        this.#grynyaSeconds.observe({ op }, activity.ms / 1000);
        if (outcome !== "ok") {
          this.#grynyaFailures.inc({ op, code: known(CODES, activity.outcome) });
        }
        return;
      }
      default: {
        const _exhaustive: never = activity.what;
        return _exhaustive;
      }
    }
  }
}
