/// <reference lib="deno.worker" />
/**
 * The Worker that runs one task's code, with the scoped permissions its host gave it. It receives
 * `start` and `cancel` from the host and reports everything as `TaskEvent`s.
 */
import { pathToFileURL } from "node:url";
import { HostCommand, type TaskEvent, type TaskSpec, utf8Length } from "../protocol.ts";
import { captureConsole } from "./console_capture.ts";
import { createTaskContext, type TaskKind } from "./task_context.ts";
import { BUILTIN_KINDS } from "./kinds/builtin_kinds.ts";
import { TaskFailure } from "./task_failure.ts";
import { LlmRelay } from "./llm_relay.ts";

const abort = new AbortController();
let finished = false;

function emit(event: TaskEvent): void {
  if (finished) return;
  if (event.type === "result" || event.type === "failure") finished = true;
  self.postMessage(event);
}

function failureEvent(code: string, error: unknown): TaskEvent {
  // A kind's own TaskFailure carries its code and a message meant for people: no stack.
  if (error instanceof TaskFailure) [code, error] = [error.code, error.message];
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return { type: "failure", error: { code, message: message.slice(0, 32 * 1024) } };
}

function fail(code: string, error: unknown): void {
  emit(failureEvent(code, error));
}

// A task must not end its own process behind the supervisor's back: Deno.exit() ends the task.
Object.defineProperty(Deno, "exit", {
  value: (code?: number) => {
    fail("exit_called", `The task called Deno.exit(${code ?? ""}); tasks end by returning`);
    self.close();
    throw new Error("Deno.exit() is not available to tasks");
  },
});

self.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  fail("unhandled_rejection", e.reason);
});
self.addEventListener("error", (e) => {
  e.preventDefault();
  fail("uncaught_error", e.error ?? e.message);
});

async function loadKind(spec: TaskSpec): Promise<TaskKind> {
  const builtin = BUILTIN_KINDS[spec.kind];
  if (builtin) return builtin;
  if (!spec.modulePath) throw new Error(`No module for kind "${spec.kind}"`);
  const mod = await import(pathToFileURL(spec.modulePath).href);
  if (typeof mod.default !== "function") {
    throw new TypeError(
      `${spec.modulePath} must have a default export that is a function (ctx) => result`,
    );
  }
  return mod.default as TaskKind;
}

async function run(spec: TaskSpec): Promise<void> {
  captureConsole(emit, spec.maxLogLineBytes);
  let kind: TaskKind;
  try {
    kind = await loadKind(spec);
  } catch (error) {
    return fail("load_error", error);
  }
  // The module is loaded: the task's own code runs with no read access at all.
  await Deno.permissions.revoke({ name: "read" });
  emit({ type: "running", time: Date.now() });
  const owned = createTaskContext(spec, abort.signal, emit, llm);
  let outcome: TaskEvent;
  try {
    outcome = resultEvent(await kind(owned.ctx), spec.maxResultBytes);
  } catch (error) {
    outcome = failureEvent(abort.signal.aborted ? "aborted" : "task_error", error);
  }
  // Close grynya before reporting: the host exits as soon as the task's end is reported.
  await owned.dispose();
  emit(outcome);
}

function resultEvent(value: unknown, maxResultBytes: number): TaskEvent {
  const json = JSON.stringify(value ?? null);
  const bytes = utf8Length(json);
  if (bytes > maxResultBytes) {
    return failureEvent(
      "result_too_large",
      `The result is ${bytes} bytes; the limit is ${maxResultBytes} (KLYM_MAX_RESULT_BYTES)`,
    );
  }
  return { type: "result", value: JSON.parse(json) };
}

const llm = new LlmRelay(emit, abort.signal);

self.onmessage = (e: MessageEvent) => {
  const command = HostCommand.parse(e.data);
  switch (command.type) {
    case "start":
      return void run(command.spec);
    case "cancel":
      return abort.abort(new DOMException(command.reason, "AbortError"));
    case "llm_response":
    case "llm_error":
      return llm.settle(command);
    default: {
      const _exhaustive: never = command;
      return _exhaustive;
    }
  }
};
