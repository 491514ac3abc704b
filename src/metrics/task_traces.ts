/**
 * Klym's own spans, through Deno's built-in OpenTelemetry (`OTEL_DENO=true` and the standard
 * `OTEL_*` variables; without them the API is a no-op and nothing is exported). One span per task
 * from admission to its final status, with children for its queueing, its process start, each
 * grynya call (a `ctx.save` is a `klym.task.save`) and each model call. A client that sends W3C
 * trace context in the request's `_meta` (`traceparent`, `tracestate`) gets the task span in its
 * trace: the span is a child of that context and links to it.
 */
import {
  type Context,
  context,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { GrynyaActivity } from "../protocol.ts";
import type { ModelCall, TaskObserver, TraceContext } from "../tasks/task_observer.ts";
import type { TaskRecord } from "../tasks/task_store.ts";
import type { TaskStatus } from "../tasks/task_state.ts";
import { VERSION } from "../version.ts";

/** One task's open spans. */
interface Open {
  readonly task: Span;
  readonly context: Context;
  queue: Span | undefined;
  spawn: Span | undefined;
}

export class TaskTraces implements TaskObserver {
  readonly #tracer = trace.getTracer("klym", VERSION);
  readonly #open = new Map<string, Open>();

  /** Tasks whose span is still open (for tests: every span ends). */
  get openCount(): number {
    return this.#open.size;
  }

  admitted(task: TaskRecord, traceContext: TraceContext | undefined): void {
    const parent = traceContext ? remoteContext(traceContext) : undefined;
    const remote = parent ? trace.getSpanContext(parent) : undefined;
    const links: Link[] = remote ? [{ context: remote }] : [];
    const span = this.#tracer.startSpan("klym.task", {
      startTime: task.createdAt,
      links,
      attributes: {
        "klym.task.id": task.id,
        "klym.task.kind": task.kind,
        "klym.principal": task.owner,
        ...(task.model ? { "klym.task.model": task.model } : {}),
      },
    }, parent ?? ROOT_CONTEXT);
    const ctx = trace.setSpan(context.active(), span);
    this.#open.set(task.id, {
      task: span,
      context: ctx,
      queue: this.#tracer.startSpan("klym.task.queue", { startTime: task.createdAt }, ctx),
      spawn: undefined,
    });
  }

  launched(task: TaskRecord, spare: boolean): void {
    const open = this.#open.get(task.id);
    if (!open) return;
    open.queue?.end();
    open.queue = undefined;
    open.spawn = this.#tracer.startSpan("klym.task.spawn", {
      attributes: { "klym.process.warm_spare": spare },
    }, open.context);
  }

  codeStarted(task: TaskRecord): void {
    const open = this.#open.get(task.id);
    open?.spawn?.end();
    if (open) open.spawn = undefined;
  }

  logged(): void {}

  settled(task: TaskRecord, _from: TaskStatus): void {
    const open = this.#open.get(task.id);
    if (!open) return;
    this.#open.delete(task.id);
    open.queue?.end();
    open.spawn?.end();
    const state = task.state;
    open.task.setAttribute("klym.task.status", state.status);
    if ("error" in state) {
      open.task.setAttribute("klym.error.code", state.error.code);
      open.task.setStatus({ code: SpanStatusCode.ERROR, message: state.error.message });
    }
    open.task.end("finishedAt" in state ? state.finishedAt : undefined);
  }

  exited(): void {}

  modelCall(task: TaskRecord, call: ModelCall): void {
    const open = this.#open.get(task.id);
    if (!open) return;
    const span = this.#tracer.startSpan("klym.model.call", {
      startTime: call.startedAt,
      attributes: {
        "gen_ai.request.model": call.model,
        "gen_ai.usage.input_tokens": call.inputTokens,
        "gen_ai.usage.output_tokens": call.outputTokens,
        "klym.model.outcome": call.outcome,
      },
    }, open.context);
    if (call.outcome !== "ok") {
      span.setStatus({ code: SpanStatusCode.ERROR, message: call.code ?? call.outcome });
    }
    span.end(call.endedAt);
  }

  grynya(task: TaskRecord, activity: GrynyaActivity): void {
    const open = this.#open.get(task.id);
    if (!open) return;
    const now = Date.now();
    const name = activity.what === "call"
      ? activity.op === "save" ? "klym.task.save" : "klym.grynya.call"
      : `klym.grynya.${activity.what}`;
    const span = this.#tracer.startSpan(name, {
      startTime: now - activity.ms,
      attributes: {
        ...(activity.op ? { "klym.grynya.op": activity.op } : {}),
        "klym.grynya.outcome": activity.outcome,
      },
    }, open.context);
    if (activity.outcome !== "ok") {
      span.setStatus({ code: SpanStatusCode.ERROR, message: activity.outcome });
    }
    span.end(now);
  }
}

/** The client's trace context; `undefined` when `traceparent` is not a valid one. */
function remoteContext(given: TraceContext): Context | undefined {
  const carrier: Record<string, string> = { traceparent: given.traceparent };
  if (given.tracestate) carrier.tracestate = given.tracestate;
  const extracted = propagation.extract(ROOT_CONTEXT, carrier);
  return trace.getSpanContext(extracted) ? extracted : undefined;
}
