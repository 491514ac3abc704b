/// <reference lib="deno.worker" />
/**
 * The runtime of one task's Worker. The Worker has no permission of any kind from its first line;
 * `lockdown.ts` is evaluated before any task code, and the kind's module is loaded by the host as
 * part of this Worker's entry (see `src/host/worker_entry.ts`), never by task code. It receives
 * `start`, `cancel` and answers from its host and reports everything as `WorkerEvent`s.
 */
import "./lockdown.ts";
import type { WorkerCommand, WorkerEvent, WorkerSpec } from "../protocol.ts";
import { captureOutput } from "./console_capture.ts";
import { createTaskContext, type TaskKind } from "./task_context.ts";
import { BUILTIN_KINDS } from "./kinds/builtin_kinds.ts";
import { type ErrorCode, KlymError } from "../errors.ts";
import { MAX_FAILURE_CHARS } from "../task_failure.ts";
import { HostLink } from "./host_link.ts";

/** Taken before task code runs, so that replacing the globals later changes nothing here. */
const post = self.postMessage.bind(self) as (event: WorkerEvent) => void;
const close = self.close.bind(self);
const abort = new AbortController();
let finished = false;
/** Until the task's function runs, any failure is its module's: a load error. */
let started = false;

function emit(event: WorkerEvent): void {
  if (finished) return;
  if (event.type === "result" || event.type === "failure") finished = true;
  post(event);
}

function failureEvent(code: ErrorCode, error: unknown): WorkerEvent {
  // A kind's own KlymError carries its code and a message meant for people: no stack.
  if (error instanceof KlymError) [code, error] = [error.code, error.message];
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return { type: "failure", error: { code, message: message.slice(0, MAX_FAILURE_CHARS) } };
}

const fail = (code: ErrorCode, error: unknown) => emit(failureEvent(code, error));
const flushOutput = captureOutput((stream, text) => emit({ type: "log", stream, text }));

// A task must not end its process behind the supervisor's back: Deno.exit() ends the task.
Object.defineProperty(Deno, "exit", {
  value: (code?: number) => {
    flushOutput();
    fail("exit_called", `The task called Deno.exit(${code ?? ""}); tasks end by returning`);
    close();
    throw new Error("Deno.exit() is not available to tasks");
  },
  configurable: false,
});
self.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  fail(started ? "unhandled_rejection" : "load_error", e.reason);
});
self.addEventListener("error", (e) => {
  e.preventDefault();
  fail(started ? "uncaught_error" : "load_error", e.error ?? e.message);
});

const link = new HostLink(emit, abort.signal);
const provided = Promise.withResolvers<TaskKind>();
let spec: WorkerSpec | undefined;

/** Whether the kind's module exports `freshProcess = true`: its host then takes no later task. */
let freshProcess = false;

/**
 * Called by the Worker's entry with the custom kind's module, once it is loaded: its default export
 * is the task's function.
 */
export function provideKind(
  module: { readonly default?: unknown; readonly freshProcess?: unknown },
): void {
  const kind = module.default;
  freshProcess = module.freshProcess === true;
  if (typeof kind === "function") provided.resolve(kind as TaskKind);
  else {
    provided.reject(
      new TypeError(
        "A kind's module must have a default export that is a function (ctx) => result",
      ),
    );
  }
}

async function loadKind(spec: WorkerSpec, moduleUrl: string | undefined): Promise<TaskKind> {
  const builtin = BUILTIN_KINDS[spec.kind];
  if (builtin) return builtin;
  // A compiled binary has no module graph to hand to a Worker at creation: it imports the kind
  // here (its loader does not check read permissions; see docs/binaries.md).
  if (moduleUrl) provideKind(await import(moduleUrl));
  return await provided.promise;
}

async function run(command: Extract<WorkerCommand, { type: "start" }>): Promise<void> {
  spec = command.spec;
  let kind: TaskKind;
  try {
    kind = await loadKind(spec, command.moduleUrl);
  } catch (error) {
    return fail("load_error", error);
  }
  started = true;
  emit(freshProcess ? { type: "running", freshProcess } : { type: "running" });
  const ctx = createTaskContext(
    spec,
    abort.signal,
    (done, total, message) =>
      emit({
        type: "progress",
        done,
        ...(total === undefined ? {} : { total }),
        ...(message === undefined ? {} : { message }),
      }),
    link,
  );
  let outcome: WorkerEvent;
  try {
    outcome = resultEvent(await kind(ctx));
  } catch (error) {
    outcome = failureEvent(abort.signal.aborted ? "aborted" : "task_error", error);
  }
  flushOutput();
  emit(outcome);
}

function resultEvent(value: unknown): WorkerEvent {
  let json: string | undefined;
  try {
    json = JSON.stringify(value ?? null);
  } catch (error) {
    return failureEvent("task_error", new TypeError(`The result is not JSON: ${error}`));
  }
  return { type: "result", json: json ?? "null" };
}

self.addEventListener("message", (e: MessageEvent<WorkerCommand>) => {
  const command = e.data;
  switch (command.type) {
    case "start":
      if (!spec) void run(command);
      return;
    case "cancel":
      // Answered before the abort runs task code's listeners: the event loop turns (cancel_ack.ts).
      post({ type: "cancel_ack", nonce: command.nonce });
      return abort.abort(new DOMException(command.reason, "AbortError"));
    case "llm_response":
    case "llm_error":
    case "grynya_result":
    case "grynya_error":
      return link.settle(command);
    default: {
      const _exhaustive: never = command;
      return _exhaustive;
    }
  }
});
